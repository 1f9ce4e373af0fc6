"""At most one outstanding wake-up per queue and job type: a marker in the coordination Redis.

A submit publishes a wake-up only if it sets the marker (SET NX with a TTL); the worker that
takes the wake-up deletes the marker *before* its claims. Why no job is left asleep: a job is
committed before its submit checks the marker. If the check finds the marker set, a wake-up
is outstanding whose taker has not deleted the marker yet, so that taker's delete, and the
claims after it, come after the commit and see the job. If the check finds no marker, this
submit publishes. A worker that claimed a job wakes one more slot the same way, so a backlog
keeps every slot busy with one message outstanding, not one per job.

A lost wake-up (a broker restarted empty) is covered twice: the marker expires (TTL), and
the relay re-sends for queued jobs whose wake-up may be lost, setting the marker itself.
Without a coordination Redis, every publish goes out (no deduplication).

In band: when the markers live in the broker's own Redis and the broker is Crisper's Redis
transport (`in_band`), a marker costs no round trip of its own. The message carries its
marker's key (MARKER_HEADER); the transport sets the marker and pushes the message in one
script, or pushes nothing if the marker was set, and the worker's main process deletes the
marker in the pipeline that records the message as unacknowledged, before it hands the
message to a pool slot. The argument above holds unchanged: the check still comes after
the commit, and the delete still comes before the claims. A message is built before the
script can tell that it is not needed, so while this process publishes for a queue and type
often (BUSY_SECONDS apart, when a wake-up is most likely outstanding), it checks the marker
first, as above, and builds a message only if it set the marker.

Heralds: a submit alone on a quiet queue (no wake-up planned there for BUSY_SECONDS) sends
its wake-up *while* its job commits, on the sender's thread, and the check after the commit
follows as always. If that check finds the herald's marker still set, its taker has not
deleted it yet, so its claims come after the commit; if it finds none, it publishes. So the
argument above holds with or without the herald, which only lets the message and the
commit overlap, the longest wait of an idle pickup. Its taker may come first and find
nothing: that costs a claim, and the check then publishes again. So the herald's marker is
deleted by the slot that takes it, just before its claim, not by the worker's main process
as it receives the message: that was often before the check, which then published a second
wake-up for 46 % of idle pickups. In band, the transport's script sets it as it pushes (its
header says `by_slot`), one round trip; out of band, SET NX, then the publish. Without
markers there is no check to rely on, and no herald.

Gathering: a check covers every job committed before it. When a sender's check found every
marker set (a wake-up outstanding), it waits GATHER_SECONDS before its next one, so that a
loop of submits shares one check among the jobs committed meanwhile instead of paying a
round trip each. The argument above is untouched (each job is still checked after its
commit); the wait delays a pickup only if the outstanding wake-up is taken meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from crisper.engine.celery_app import HARDENED_REDIS
from crisper.errors import CrisperError

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)
MARKER_TTL_SECONDS = 30
KEY_PREFIX = "crisper.wake:"
KEY = KEY_PREFIX + "{queue}:{type}"
# A wake-up's header naming its marker (in band): {"key": unprefixed key, "ttl": s, "force": b,
# "by_slot": true if the taker's slot deletes it, not the worker's main process on receipt}
MARKER_HEADER = "crisper_marker"
BUSY_SECONDS = 0.005
GATHER_SECONDS = 0.002


@dataclass(frozen=True)
class Wake:
    """How one wake-up goes out: with `headers`; `owned` if this process set its marker
    beforehand, which it then gives back should the wake-up not go out."""

    headers: dict[str, Any]
    owned: bool


class Wakes:
    """The markers of outstanding wake-ups (one Redis client per process, made on first use)."""

    def __init__(self, url: Callable[[], str | None] | None, prefix: str = "",
                 ttl: int = MARKER_TTL_SECONDS, busy_seconds: float = BUSY_SECONDS,
                 gather_seconds: float = GATHER_SECONDS) -> None:
        self._url = url  # resolved on first use: building an app opens and reads nothing
        self._prefix = prefix
        self._ttl = ttl
        self._busy_seconds = busy_seconds
        self._gather_seconds = gather_seconds
        self._client: redis.Redis | None = None
        self._in_band: bool | None = None
        self._planned_at: dict[tuple[str, str], float] = {}
        # The last plan found every marker set (a hint: any thread of the process may plan).
        self._all_outstanding = False

    def in_band(self, app: Celery) -> bool:
        """Whether the markers ride `app`'s broker messages (see above): the broker is this
        Redis, through Crisper's transport with kombu's acknowledgement emulation (whose
        pipeline deletes the marker)."""
        if self._in_band is None:
            try:
                url = self._url() if self._url is not None else None
            except CrisperError:
                url = None
            options = app.conf.broker_transport_options or {}
            self._in_band = (url is not None and url == app.conf.broker_url
                             and app.conf.broker_transport == HARDENED_REDIS
                             and options.get("ack_emulation", True) is not False)
        return self._in_band

    def plan(self, app: Celery, keys: Iterable[tuple[str, str]], force: bool = False,
             herald: bool = False) -> dict[tuple[str, str], Wake]:
        """Which of these wake-ups ((type, queue) keys) to send, and how: those with no
        outstanding wake-up; all of them if `force` (the relay: the outstanding one may be
        lost), each setting its marker. In band, the transport checks the marker as it
        pushes, unless this key is busy (see above); a `herald`'s marker is deleted by the
        taker's slot, just before its claim, not on receipt (see "Heralds")."""
        in_band = self.in_band(app)
        now = time.monotonic()
        wakes: dict[tuple[str, str], Wake] = {}
        outstanding = 0
        for type_name, queue in keys:
            last = self._planned_at.get((type_name, queue), float("-inf"))
            busy = now - last < self._busy_seconds
            self._planned_at[(type_name, queue)] = now
            if in_band and (force or herald or not busy):
                wakes[(type_name, queue)] = Wake(
                    self._header(queue, type_name, force, by_slot=herald), False)
                continue
            if force:
                self.mark(queue, type_name)
            elif not self.claim(queue, type_name):
                outstanding += 1
                continue
            # In band, the marker this process set is deleted by the worker that takes it.
            headers = self._header(queue, type_name, force=True) if in_band else {}
            wakes[(type_name, queue)] = Wake(headers, True)
        self._all_outstanding = outstanding > 0 and not wakes
        return wakes

    def quiet(self, app: Celery, queue: str, type_name: str) -> bool:
        """Whether a herald may go out for this queue and type (see "Heralds" above): markers
        are kept, and this process planned no wake-up for it in the last BUSY_SECONDS."""
        last = self._planned_at.get((type_name, queue), float("-inf"))
        return (time.monotonic() - last >= self._busy_seconds
                and (self.in_band(app) or self._redis() is not None))

    def gather_seconds(self) -> float:
        """How long a sender lets further wake-ups gather before its next check (see
        "Gathering" above): a moment if the last plan found every marker set, else none."""
        return self._gather_seconds if self._all_outstanding else 0.0

    def _header(self, queue: str, type_name: str, force: bool, by_slot: bool = False
                ) -> dict[str, Any]:
        key = KEY.format(queue=queue, type=type_name)  # the transport adds the broker's prefix
        marker = {"key": key, "ttl": self._ttl, "force": force}
        return {MARKER_HEADER: {**marker, "by_slot": True} if by_slot else marker}

    def claim(self, queue: str, type_name: str) -> bool:
        """Whether the caller should publish the wake-up (it set the marker, or no Redis)."""
        client = self._redis()
        if client is None:
            return True
        try:
            return bool(client.set(self._key(queue, type_name), b"1", nx=True, ex=self._ttl))
        except redis.RedisError as exc:  # publish anyway: a duplicate wake-up is harmless
            log.debug("wake-up marker unavailable (%s)", exc)
            return True

    def mark(self, queue: str, type_name: str) -> None:
        """A wake-up goes out regardless of the marker (the relay): set it, before publishing."""
        client = self._redis()
        if client is not None:
            try:
                client.set(self._key(queue, type_name), b"1", ex=self._ttl)
            except redis.RedisError as exc:
                log.debug("wake-up marker unavailable (%s)", exc)

    def taken(self, queue: str, type_name: str) -> None:
        """A worker took the wake-up: the next submit publishes again (call before claiming)."""
        client = self._redis()
        if client is not None:
            try:
                client.delete(self._key(queue, type_name))
            except redis.RedisError as exc:  # the marker expires on its own
                log.debug("wake-up marker unavailable (%s)", exc)

    def reset_after_fork(self) -> None:
        self._client = None

    def _key(self, queue: str, type_name: str) -> str:
        return self._prefix + KEY.format(queue=queue, type=type_name)

    def _redis(self) -> redis.Redis | None:
        if self._client is None and self._url is not None:
            try:
                url = self._url()
            except CrisperError as exc:  # no readable coordination Redis: no deduplication
                log.debug("no wake-up markers (%s)", exc)
                return None
            if url is None:
                return None
            url = "redis" + url[len("valkey"):] if url.startswith("valkey") else url
            self._client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        return self._client
