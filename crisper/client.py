"""`crisper.Client`: submit, read, wait for, stream and steer jobs over the HTTP API.

Answers are the same read models the local service returns (JobRecord, EventRecord,
LogRecord), and errors the same exceptions (JobNotFound, InvalidTransition, ...), so code
can move between in-process and remote use without change.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import httpx

from crisper.durations import Duration, seconds
from crisper.errors import (
    AccessDenied,
    BrokerUnavailable,
    CrisperError,
    DuplicateJob,
    InvalidParams,
    InvalidTransition,
    JobNotFound,
    StoreUnavailable,
    UnknownJobType,
)
from crisper.states import JobState
from crisper.store.records import EventRecord, JobRecord, LogRecord


@dataclass(frozen=True)
class StreamEvent:
    """One Server-Sent Event of a job's stream: kind is state, progress or log."""

    kind: str
    data: dict[str, Any]
    id: str | None


@dataclass(frozen=True)
class Submitted:
    """A submit's answer: the job, and whether it was an idempotent replay of an earlier one."""

    job: JobRecord
    replayed: bool


T = TypeVar("T")

# Errors after which a stream reconnects (with Last-Event-ID) instead of giving up.
DROPPED = (httpx.RemoteProtocolError, httpx.ReadError, httpx.ReadTimeout)
STREAM_READ_TIMEOUT = 60.0  # the server sends a keep-alive every 15 s


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API request and how to read its answer: what Client and AsyncClient share."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Any = None
    json: Any = None

    def answer(self, response: httpx.Response) -> T:
        """The parsed answer; a problem answer raises the matching Crisper error."""
        if response.status_code >= 400:
            raise error_from(response)
        return self.parse(response)


def _job(response: httpx.Response) -> JobRecord:
    return job_from_json(response.json())


def _body(response: httpx.Response) -> Any:
    return response.json()


class Calls:
    """The API's requests, built and read without doing I/O (both clients send them)."""

    @staticmethod
    def submit(type: str, params: dict[str, Any] | None = None, *,
               queue: str | None = None, priority: int | None = None,
               delay: Duration | None = None, run_at: datetime | None = None,
               hold: bool = False, idempotency_key: str | None = None,
               tags: Sequence[str] = (), max_attempts: int | None = None,
               unique_key: str | None = None, on_duplicate: str = "return"
               ) -> Call[Submitted]:
        given = {"queue": queue, "priority": priority,
                 "delay": None if delay is None else seconds(delay),
                 "run_at": None if run_at is None else run_at.isoformat(),
                 "hold": hold or None, "idempotency_key": idempotency_key,
                 "tags": list(tags) or None, "max_attempts": max_attempts,
                 "unique_key": unique_key,
                 "on_duplicate": None if on_duplicate == "return" else on_duplicate}
        body = {"type": type, "params": params or {},
                **{k: v for k, v in given.items() if v is not None}}
        return Call("POST", "/v1/jobs", lambda r: Submitted(_job(r), r.status_code == 200),
                    json=body)

    @staticmethod
    def get(job_id: object) -> Call[JobRecord]:
        return Call("GET", f"/v1/jobs/{job_id}", _job)

    @staticmethod
    def list_jobs(*, states: Sequence[JobState | str] = (), types: Sequence[str] = (),
                  queues: Sequence[str] = (), tag: str | None = None, before: object = None,
                  limit: int = 50, metadata: Mapping[str, str] | None = None
                  ) -> Call[list[JobRecord]]:
        params: list[tuple[str, str]] = [("limit", str(limit))]
        params += [("state", JobState(s).value) for s in states]
        params += [("type", t) for t in types] + [("queue", q) for q in queues]
        if tag:
            params.append(("tag", tag))
        params += [("meta", f"{k}:{v}") for k, v in (metadata or {}).items()]
        if before is not None:
            params.append(("before", str(before)))
        return Call("GET", "/v1/jobs", lambda r: [job_from_json(j) for j in r.json()["items"]],
                    params=params)

    @staticmethod
    def events(job_id: object) -> Call[list[EventRecord]]:
        def parse(response: httpx.Response) -> list[EventRecord]:
            return [EventRecord(id=r["id"], job_id=uuid.UUID(str(job_id)),
                                at=datetime.fromisoformat(r["at"]),
                                from_state=r["from_state"], to_state=r["to_state"],
                                reason=r["reason"], attempt=r["attempt"], worker=r["worker"],
                                detail=r["detail"]) for r in response.json()]
        return Call("GET", f"/v1/jobs/{job_id}/events", parse)

    @staticmethod
    def logs(job_id: object, after: int = 0, limit: int = 1000) -> Call[list[LogRecord]]:
        def parse(response: httpx.Response) -> list[LogRecord]:
            return [LogRecord(id=r["id"], job_id=uuid.UUID(str(job_id)),
                              at=datetime.fromisoformat(r["at"]), attempt=r["attempt"],
                              level=r["level"], message=r["message"]) for r in response.json()]
        return Call("GET", f"/v1/jobs/{job_id}/logs", parse,
                    params={"after": after, "limit": limit})

    @staticmethod
    def act(job_id: object, action: str) -> Call[JobRecord]:
        """cancel, retry or start one job."""
        return Call("POST", f"/v1/jobs/{job_id}/{action}", _job)

    @staticmethod
    def bulk(action: str, ids: Sequence[object] | None = None,
             filter: dict[str, Any] | None = None) -> Call[dict[str, Any]]:
        body: dict[str, Any] = {"ids": [str(i) for i in ids]} if ids is not None else {}
        if filter is not None:
            body["filter"] = filter
        return Call("POST", f"/v1/jobs/{action}", _body, json=body)

    @staticmethod
    def listing(name: str) -> Call[list[dict[str, Any]]]:
        """types, queues or workers."""
        return Call("GET", f"/v1/{name}", _body)


class Waiting:
    """When to ask again while waiting for a job to end, and when to give up."""

    def __init__(self, job_id: object, timeout: float | None, poll: float) -> None:
        self.job_id = job_id
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.interval = poll

    def pause_after(self, job: JobRecord) -> float | None:
        """None once the job has ended; else seconds to sleep (TimeoutError past the timeout)."""
        if job.state.is_terminal:
            return None
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise TimeoutError(f"job {self.job_id} is still {job.state.value} "
                               f"after {self.timeout}s")
        pause, self.interval = self.interval, min(self.interval * 1.5, 2.0)
        return pause


class Following:
    """A job's stream across reconnects: where to resume, and the events read so far."""

    def __init__(self, job_id: object, last_event_id: str | None) -> None:
        self.path = f"/v1/jobs/{job_id}/stream"
        self.last_event_id = last_event_id
        self._decoder = SseDecoder()

    def headers(self) -> dict[str, str]:
        self._decoder = SseDecoder()  # a new connection starts a new message
        return {"Last-Event-ID": self.last_event_id} if self.last_event_id else {}

    def feed(self, line: str) -> StreamEvent | None:
        """The event a line completes, if it is one to hand out (not an id-only message)."""
        event = self._decoder.feed(line)
        if event is None:
            return None
        if event.id is not None:
            self.last_event_id = event.id
        return event if event.kind else None


def _unreachable(base_url: object, exc: Exception) -> CrisperError:
    return CrisperError(f"cannot reach the Crisper API at {base_url}: {exc}")


class Client:
    """A synchronous client for one Crisper API server. Use it as a context manager or close()."""

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout,
                                  transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def run(self, call: Call[T]) -> T:
        try:
            response = self._http.request(call.method, call.path, params=call.params,
                                          json=call.json)
        except httpx.TransportError as exc:
            raise _unreachable(self._http.base_url, exc) from exc
        return call.answer(response)

    def submit(self, type: str, params: dict[str, Any] | None = None, **options: Any
               ) -> JobRecord:
        """Options: queue, priority, delay, run_at, hold, idempotency_key, tags, max_attempts,
        unique_key, on_duplicate ("return" or "reject")."""
        return self.run(Calls.submit(type, params, **options)).job

    def submit_ex(self, type: str, params: dict[str, Any] | None = None, **options: Any
                  ) -> Submitted:
        """Like submit(), and also tells whether the server replayed an earlier job."""
        return self.run(Calls.submit(type, params, **options))

    def get(self, job_id: object) -> JobRecord:
        return self.run(Calls.get(job_id))

    def list_jobs(self, **filters: Any) -> list[JobRecord]:
        """Filters: states, types, queues, tag, before (a job id), limit."""
        return self.run(Calls.list_jobs(**filters))

    def events(self, job_id: object) -> list[EventRecord]:
        return self.run(Calls.events(job_id))

    def logs(self, job_id: object, after: int = 0, limit: int = 1000) -> list[LogRecord]:
        return self.run(Calls.logs(job_id, after, limit))

    def cancel(self, job_id: object) -> JobRecord:
        return self.run(Calls.act(job_id, "cancel"))

    def retry(self, job_id: object) -> JobRecord:
        return self.run(Calls.act(job_id, "retry"))

    def start(self, job_id: object) -> JobRecord:
        return self.run(Calls.act(job_id, "start"))

    def bulk(self, action: str, *, ids: Sequence[object] | None = None,
             filter: dict[str, Any] | None = None) -> dict[str, Any]:
        """Cancel or retry many jobs by ids or by a filter; answers the counts."""
        return self.run(Calls.bulk(action, ids, filter))

    def types(self) -> list[dict[str, Any]]:
        return self.run(Calls.listing("types"))

    def queues(self) -> list[dict[str, Any]]:
        return self.run(Calls.listing("queues"))

    def workers(self) -> list[dict[str, Any]]:
        return self.run(Calls.listing("workers"))

    def wait(self, job_id: object, timeout: float | None = None, poll: float = 0.1) -> JobRecord:
        """Block until the job is succeeded, failed or cancelled; TimeoutError past `timeout`."""
        waiting = Waiting(job_id, timeout, poll)
        while True:
            job = self.get(job_id)
            pause = waiting.pause_after(job)
            if pause is None:
                return job
            time.sleep(pause)

    def stream(self, job_id: object, last_event_id: str | None = None, *,
               reconnect: bool = True) -> Iterator[StreamEvent]:
        """Live events until the job's final state; a dropped connection resumes where it was."""
        following = Following(job_id, last_event_id)
        timeout = httpx.Timeout(self._http.timeout.connect, read=STREAM_READ_TIMEOUT)
        while True:
            try:
                with self._http.stream("GET", following.path, headers=following.headers(),
                                       timeout=timeout) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise error_from(response)
                    for line in response.iter_lines():
                        if (event := following.feed(line)) is not None:
                            yield event
                return  # the server ends the stream after the final state
            except DROPPED:
                if not reconnect:
                    raise
                time.sleep(0.2)


class AsyncClient:
    """The same client for asyncio code (a FastAPI backend, say): every method is awaited."""

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers,
                                       timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def run(self, call: Call[T]) -> T:
        try:
            response = await self._http.request(call.method, call.path, params=call.params,
                                                json=call.json)
        except httpx.TransportError as exc:
            raise _unreachable(self._http.base_url, exc) from exc
        return call.answer(response)

    async def submit(self, type: str, params: dict[str, Any] | None = None, **options: Any
                     ) -> JobRecord:
        """Options as for Client.submit()."""
        return (await self.run(Calls.submit(type, params, **options))).job

    async def get(self, job_id: object) -> JobRecord:
        return await self.run(Calls.get(job_id))

    async def list_jobs(self, **filters: Any) -> list[JobRecord]:
        return await self.run(Calls.list_jobs(**filters))

    async def cancel(self, job_id: object) -> JobRecord:
        return await self.run(Calls.act(job_id, "cancel"))

    async def retry(self, job_id: object) -> JobRecord:
        return await self.run(Calls.act(job_id, "retry"))

    async def start(self, job_id: object) -> JobRecord:
        return await self.run(Calls.act(job_id, "start"))

    async def wait(self, job_id: object, timeout: float | None = None, poll: float = 0.1
                   ) -> JobRecord:
        waiting = Waiting(job_id, timeout, poll)
        while True:
            job = await self.get(job_id)
            pause = waiting.pause_after(job)
            if pause is None:
                return job
            await asyncio.sleep(pause)

    async def stream(self, job_id: object, last_event_id: str | None = None, *,
                     reconnect: bool = True) -> AsyncIterator[StreamEvent]:
        following = Following(job_id, last_event_id)
        timeout = httpx.Timeout(self._http.timeout.connect, read=STREAM_READ_TIMEOUT)
        while True:
            try:
                async with self._http.stream("GET", following.path, headers=following.headers(),
                                             timeout=timeout) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        raise error_from(response)
                    async for line in response.aiter_lines():
                        if (event := following.feed(line)) is not None:
                            yield event
                return
            except DROPPED:
                if not reconnect:
                    raise
                await asyncio.sleep(0.2)


class SseDecoder:
    """Server-Sent Events, one text line at a time; an id-only message has kind ""."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.kind = ""
        self.event_id: str | None = None
        self.seen = False
        self.data: list[str] = []

    def feed(self, line: str) -> StreamEvent | None:
        if line == "":
            event = None
            if self.seen:
                payload = json.loads("\n".join(self.data)) if self.data else {}
                event = StreamEvent(self.kind, payload, self.event_id)
            self._reset()
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        self.seen = True
        if name == "event":
            self.kind = value
        elif name == "data":
            self.data.append(value)
        elif name == "id":
            self.event_id = value
        return None


def parse_sse(lines: Iterable[str]) -> Iterator[StreamEvent]:
    """Server-Sent Events from text lines; an id-only message comes out with kind ""."""
    decoder = SseDecoder()
    for line in lines:
        if (event := decoder.feed(line)) is not None:
            yield event


def error_from(response: httpx.Response) -> CrisperError:
    """The Crisper exception for a problem+json answer (a plain CrisperError if unknown)."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    detail = str(body.get("detail") or f"HTTP {response.status_code}")
    kind = str(body.get("type", "")).rpartition(":")[2]
    if kind == "job-not-found":
        return JobNotFound(body.get("job_id", "?"))
    error: CrisperError
    if kind == "invalid-transition":
        error = InvalidTransition(body.get("job_id", "?"), body.get("state", "?"), "", [])
        error.args = (detail,)
        return error
    if kind == "duplicate-job":
        error = DuplicateJob(body.get("unique_key", "?"), body.get("job_id", "?"))
        error.args = (detail,)
        return error
    if kind == "unknown-job-type":
        error = UnknownJobType("?", body.get("known_types", []))
        error.args = (detail,)
        return error
    if kind == "invalid-params":
        errors = [{**e, "loc": e["loc"][1:]} for e in body.get("errors", [])]
        error = InvalidParams("?", errors)
        error.args = (detail,)
        return error
    if response.status_code in (401, 403):
        return AccessDenied(detail, scope=body.get("scope"))
    if kind == "database-unavailable":
        return StoreUnavailable(detail)
    if kind == "broker-unavailable":
        return BrokerUnavailable(detail)
    return CrisperError(detail)


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def job_from_json(j: dict[str, Any]) -> JobRecord:
    progress = j.get("progress") or {}
    return JobRecord(
        id=uuid.UUID(j["id"]), type=j["type"], queue=j["queue"], priority=j["priority"],
        state=JobState(j["state"]), tenant=j["tenant"], params=j["params"], result=j["result"],
        error=j["error"], tags=j["tags"], metadata=j.get("metadata") or {},
        attempt=j["attempt"], max_attempts=j["max_attempts"],
        timeout=j["timeout"], idempotency_key=j["idempotency_key"],
        progress_current=progress.get("current"), progress_total=progress.get("total"),
        progress_message=progress.get("message"), worker=j["worker"], task_id=None,
        cancel_requested_at=_when(j["cancel_requested_at"]), lease_expires_at=None,
        created_at=datetime.fromisoformat(j["created_at"]), run_at=_when(j["run_at"]),
        queued_at=_when(j["queued_at"]), started_at=_when(j["started_at"]),
        finished_at=_when(j["finished_at"]), cancelled_at=_when(j["cancelled_at"]),
    )
