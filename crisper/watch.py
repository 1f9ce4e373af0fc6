"""The live watchers, as Server-Sent Events for the API and the dashboard alike: a job's
stream (history from the store, news from Redis) and a batch's counters.

The watch is plain synchronous code (Starlette runs the iterator in a thread), so there is
one copy of the logic. The store is the truth: state changes and log lines are read from it
with their ids, which make up the SSE event id; a reconnect with Last-Event-ID resumes after
them. Redis pub/sub, when configured, only makes news arrive at once: progress is forwarded
as it is published, log lines are shown early and matched to their stored rows later, and a
state message triggers a read of the store. Without Redis the store is polled.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis

from crisper.batches import BatchService
from crisper.bodies import Batch
from crisper.errors import CrisperError, JobNotFound
from crisper.live import NOTICED_WITHIN, Watch, channel
from crisper.records import JobRecord
from crisper.service import JobService
from crisper.states import TERMINAL
from crisper.store.batches import BatchRecord

log = logging.getLogger(__name__)
TERMINAL_STATES = frozenset(s.value for s in TERMINAL)


@dataclass(frozen=True)
class Cursor:
    """How far a client has read: the last event id and the last log line id it saw."""

    event: int = 0
    log: int = 0

    def __str__(self) -> str:
        return f"{self.event}-{self.log}"

    @classmethod
    def parse(cls, value: str | None) -> Cursor:
        """A Last-Event-ID header; anything unreadable starts from the beginning."""
        if not value:
            return cls()
        event, sep, line = value.strip().partition("-")
        if not sep or not event.isdigit() or not line.isdigit():
            return cls()
        return cls(int(event), int(line))


@dataclass(frozen=True)
class SseEvent:
    kind: str  # state | progress | log ; "" for an id-only or keep-alive message
    data: dict[str, Any] | None = None
    id: str | None = None

    def encode(self) -> bytes:
        lines = []
        if self.id is not None:
            lines.append(f"id: {self.id}")
        if self.kind:
            lines.append(f"event: {self.kind}")
        if self.data is not None:
            lines.append(f"data: {json.dumps(self.data, default=str, separators=(',', ':'))}")
        if not lines:
            lines.append(": keep-alive")
        return ("\n".join(lines) + "\n\n").encode()


def _line_key(at: datetime | str, message: str) -> tuple[int, str]:
    when = datetime.fromisoformat(at) if isinstance(at, str) else at
    return round(when.timestamp() * 1_000_000), message


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _progress(job: JobRecord) -> dict[str, Any]:
    return {"current": job.progress_current, "total": job.progress_total,
            "percent": job.percent, "message": job.progress_message}


class JobWatch:
    """Iterate to get a job's SSE events until its final state (then the iteration ends)."""

    def __init__(self, service: JobService, job_id: uuid.UUID, tenant: str | None,
                 cursor: Cursor, redis_url: str | None, poll_seconds: float = 0.5,
                 keepalive_seconds: float = 15.0) -> None:
        self.service = service
        self.job_id = job_id
        self.tenant = tenant
        self.cursor = cursor
        self.redis_url = redis_url
        # With Redis, the store is still read now and then in case a message was missed.
        self.poll_seconds = poll_seconds if redis_url is None else max(poll_seconds, 2.0)
        # Publishers notice a new watcher within NOTICED_WITHIN: the store is read again then.
        self._first_wait = min(self.poll_seconds, NOTICED_WITHIN * 1.2)
        self._announced: Watch | None = None
        self.keepalive_seconds = keepalive_seconds
        self._progress: tuple[Any, ...] | None = None  # the last progress sent
        # (attempt, seq) of the last live progress sent: an older message is dropped, and
        # the store's copy (up to a heartbeat behind) is sent only where no live one was,
        # or once the job has finished (its final progress is stored last).
        self._live: tuple[int, int] | None = None
        # Log lines shown live but not yet read from the store, and the other way round.
        self._live_lines: set[tuple[int, str]] = set()
        self._stored_lines: set[tuple[int, str]] = set()

    def __iter__(self) -> Iterator[bytes]:
        for event in self.events():
            yield event.encode()

    def events(self) -> Iterator[SseEvent]:
        pubsub = self._subscribe()
        try:
            last_sent = time.monotonic()
            while True:
                finished = False
                for event in self._from_store():
                    last_sent = time.monotonic()
                    finished = finished or event.kind == "end"
                    if event.kind != "end":
                        yield event
                if finished:
                    return
                for event in self._wait(pubsub):
                    last_sent = time.monotonic()
                    yield event
                self._renew()
                if time.monotonic() - last_sent >= self.keepalive_seconds:
                    last_sent = time.monotonic()
                    yield SseEvent("")
        finally:
            if pubsub is not None:
                with contextlib.suppress(redis.RedisError):
                    pubsub.close()
            if self._announced is not None:
                with contextlib.suppress(redis.RedisError):
                    self._announced.end()

    def _subscribe(self) -> Any:
        if self.redis_url is None:
            return None
        try:
            client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=2)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(channel(self.job_id))
            self._announced = Watch(client, self.job_id)
            self._announced.renew()
            return pubsub
        except redis.RedisError as exc:
            log.info("live updates unavailable, polling the store: %s", exc)
            self.poll_seconds = 0.5
            return None

    def _renew(self) -> None:
        if self._announced is not None:
            try:
                self._announced.renew()
            except redis.RedisError as exc:  # the store is polled anyway
                log.info("could not renew the live watch of %s: %s", self.job_id, exc)

    def _from_store(self) -> Iterator[SseEvent]:
        """New events and log lines in time order, each carrying the cursor after it."""
        try:
            job = self.service.get(self.job_id, self.tenant)
        except JobNotFound:  # pruned or deleted while watched
            yield SseEvent("end")
            return
        events = [e for e in self.service.events(self.job_id, self.tenant)
                  if e.id > self.cursor.event]
        lines = self.service.logs(self.job_id, self.tenant, after=self.cursor.log)
        if not job.state.is_terminal and any(e.to_state in TERMINAL_STATES for e in events):
            job = self.service.get(self.job_id, self.tenant)  # finished meanwhile: final progress
        items: list[tuple[datetime, int, Any]] = [(e.at, 1, e) for e in events]
        items += [(line.at, 0, line) for line in lines]
        progress = _progress(job)
        stale = (self._live is not None and not job.state.is_terminal
                 and job.attempt <= self._live[0])
        if progress["current"] is not None and not stale and self._new_progress(progress):
            yield SseEvent("progress", progress)
        skipped = False
        for _at, is_event, item in sorted(items, key=lambda x: (x[0], x[1], x[2].id)):
            if is_event:
                self.cursor = Cursor(item.id, self.cursor.log)
                skipped = False
                if item.to_state is None:  # a note (a cancel request): the job did not move
                    yield SseEvent("note", {"reason": item.reason, "attempt": item.attempt,
                                            "at": item.at.isoformat()}, str(self.cursor))
                    continue
                yield SseEvent("state", {"state": item.to_state, "from": item.from_state,
                                         "reason": item.reason, "attempt": item.attempt,
                                         "at": item.at.isoformat()}, str(self.cursor))
                continue
            self.cursor = Cursor(self.cursor.event, item.id)
            key = _line_key(item.at, item.message)
            if key in self._live_lines:  # already shown live: only move the client's cursor
                self._live_lines.discard(key)
                skipped = True
                continue
            skipped = False
            self._stored_lines.add(key)
            yield SseEvent("log", {"level": item.level, "message": item.message,
                                   "attempt": item.attempt, "at": item.at.isoformat()},
                           str(self.cursor))
        if skipped:
            yield SseEvent("", None, str(self.cursor))
        if job.state.is_terminal:  # its final state event was sent above or before a reconnect
            yield SseEvent("end")

    def _new_progress(self, progress: dict[str, Any]) -> bool:
        """Whether `progress` differs from the last one sent (and remember it)."""
        value = (progress.get("current"), progress.get("total"), progress.get("message"))
        if value == self._progress:
            return False
        self._progress = value
        return True

    def _wait(self, pubsub: Any) -> Iterator[SseEvent]:
        """Until the next store read: forward live progress and log lines; stop early on news."""
        deadline = time.monotonic() + self._first_wait
        self._first_wait = self.poll_seconds
        while (left := deadline - time.monotonic()) > 0:
            if pubsub is None:
                time.sleep(left)
                return
            try:
                message = pubsub.get_message(timeout=left)
            except redis.RedisError as exc:
                log.info("live updates lost, polling the store: %s", exc)
                time.sleep(left)
                return
            if message is None or message.get("type") != "message":
                continue
            try:
                data = json.loads(message["data"])
            except (ValueError, TypeError):
                continue
            kind = data.pop("kind", None)
            if kind == "progress":
                order = (_int(data.pop("attempt", 0)), _int(data.pop("seq", 0)))
                if self._live is not None and order <= self._live:
                    continue  # older than one already sent
                self._live = order
                total, current = data.get("total"), data.get("current")
                data["percent"] = (round(100.0 * current / total, 1)
                                   if total and current is not None else None)
                if self._new_progress(data):
                    yield SseEvent("progress", data)
            elif kind == "log" and "at" in data and "message" in data:
                key = _line_key(data["at"], data["message"])
                if key not in self._stored_lines:  # not already sent from the store
                    self._live_lines.add(key)
                    yield SseEvent("log", data)
            elif kind == "state":
                return


def watch_batch(service: BatchService, batch: BatchRecord, tenant: str | None,
          poll_seconds: float = 0.5, keepalive_seconds: float = 15.0) -> Iterator[bytes]:
    """The batch's counters as SSE, read from the store (the source of truth) each poll."""
    last: tuple[int, int, int] | None = None
    quiet_since = time.monotonic()
    while True:
        counters = (batch.succeeded, batch.failed, batch.cancelled)
        if counters != last:
            last, quiet_since = counters, time.monotonic()
            data = Batch.of(batch).model_dump(mode="json")
            yield f"event: progress\ndata: {json.dumps(data)}\n\n".encode()
            if batch.pending == 0:
                return
        elif time.monotonic() - quiet_since > keepalive_seconds:
            quiet_since = time.monotonic()
            yield b": keepalive\n\n"
        time.sleep(poll_seconds)
        try:
            batch = service.get(batch.id, tenant)
        except CrisperError:
            return
