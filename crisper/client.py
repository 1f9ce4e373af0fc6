"""`crisper.Client`: submit, read, wait for, stream and steer jobs over the HTTP API.

Answers are the same read models the local service returns (JobRecord, EventRecord,
LogRecord), and errors the same exceptions (JobNotFound, InvalidTransition, ...), so code
can move between in-process and remote use without change.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, ParamSpec, TypeVar, overload

import httpx

from crisper.durations import Duration, seconds
from crisper.errors import AccessDenied, CrisperError, error_class_for
from crisper.records import EventRecord, JobRecord, LogRecord
from crisper.states import JobState
from crisper.waiting import Waiting, await_end, wait_for_end

__all__ = ["AsyncClient", "Call", "Client", "Following", "StreamEvent", "Submitted", "Waiting",
           "error_from", "job_from_json", "parse_sse"]


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
S = TypeVar("S")
P = ParamSpec("P")

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

    def then(self, f: Callable[[T], S]) -> Call[S]:
        """The same request, its answer passed through `f`."""
        parse = self.parse
        return Call(self.method, self.path, lambda r: f(parse(r)), self.params, self.json)


def _job(response: httpx.Response) -> JobRecord:
    return job_from_json(response.json())


def _body(response: httpx.Response) -> Any:
    return response.json()


class Calls:
    """The API's requests, built and read without doing I/O (Methods makes them methods)."""

    @staticmethod
    def submit_ex(type: str, params: dict[str, Any] | None = None, *,
                  queue: str | None = None, priority: int | None = None,
                  delay: Duration | None = None, run_at: datetime | None = None,
                  hold: bool = False, idempotency_key: str | None = None,
                  tags: Sequence[str] = (), max_attempts: int | None = None,
                  unique_key: str | None = None, on_duplicate: str = "return",
                  soft_time_limit: Duration | None = None, time_limit: Duration | None = None,
                  callback_url: str | None = None) -> Call[Submitted]:
        """Also tells whether the server replayed an earlier job (idempotency_key).

        on_duplicate: "return" the active job holding `unique_key`, or "reject" (DuplicateJob).
        soft_time_limit, time_limit: the job's own limits instead of its type's.
        """
        given = {"queue": queue, "priority": priority,
                 "delay": None if delay is None else seconds(delay),
                 "run_at": None if run_at is None else run_at.isoformat(),
                 "hold": hold or None, "idempotency_key": idempotency_key,
                 "tags": list(tags) or None, "max_attempts": max_attempts,
                 "unique_key": unique_key, "callback_url": callback_url,
                 "on_duplicate": None if on_duplicate == "return" else on_duplicate,
                 "soft_time_limit": _limit(soft_time_limit), "time_limit": _limit(time_limit)}
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
    def retry(job_id: object, params: dict[str, Any] | None = None) -> Call[JobRecord]:
        """Run a finished job again; with `params`, with these instead of its own (a replay
        with edited params: the old ones stay in the job's history)."""
        return Call("POST", f"/v1/jobs/{job_id}/retry", _job,
                    json=None if params is None else {"params": params})

    @staticmethod
    def bulk(action: str, *, ids: Sequence[object] | None = None,
             filter: dict[str, Any] | None = None) -> Call[dict[str, Any]]:
        """Cancel or retry many jobs by ids or by a filter; answers the counts."""
        body: dict[str, Any] = {"ids": [str(i) for i in ids]} if ids is not None else {}
        if filter is not None:
            body["filter"] = filter
        return Call("POST", f"/v1/jobs/{action}", _body, json=body)

    @staticmethod
    def listing(name: str) -> Call[list[dict[str, Any]]]:
        """types, queues or workers."""
        return Call("GET", f"/v1/{name}", _body)


def _then(build: Callable[P, Call[S]], f: Callable[[S], T], doc: str) -> Callable[P, Call[T]]:
    @functools.wraps(build)
    def mapped(*args: P.args, **kwargs: P.kwargs) -> Call[T]:
        return build(*args, **kwargs).then(f)
    mapped.__doc__ = doc
    return mapped


def _action(action: str) -> Callable[[object], Call[JobRecord]]:
    def act(job_id: object) -> Call[JobRecord]:
        return Calls.act(job_id, action)
    act.__doc__ = f"{action.capitalize()} one job; answers the job as it is then."
    return act


def _listing(name: str) -> Callable[[], Call[list[dict[str, Any]]]]:
    def listing() -> Call[list[dict[str, Any]]]:
        return Calls.listing(name)
    listing.__doc__ = f"The server's {name}."
    return listing


class Endpoint(Generic[P, T]):
    """One API method, defined once as the Call it sends: Client runs it, AsyncClient awaits it.

    (A descriptor, so that each client's attribute has the build's parameters and, for mypy,
    the right return type: T for Client, a coroutine of T for AsyncClient.)
    """

    def __init__(self, build: Callable[P, Call[T]]) -> None:
        self.build = build
        self.__doc__ = build.__doc__
        self.__wrapped__ = build  # inspect.signature() shows the build's parameters

    def __set_name__(self, owner: type, name: str) -> None:
        self.__name__ = name

    @overload
    def __get__(self, client: None, owner: type) -> Endpoint[P, T]: ...
    @overload
    def __get__(self, client: Client, owner: type) -> Callable[P, T]: ...
    @overload
    def __get__(self, client: AsyncClient, owner: type
                ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    def __get__(self, client: Client | AsyncClient | None, owner: type) -> Any:
        return self if client is None else client.bound(self)


class Methods:
    """The API's methods, each one line: what Client and AsyncClient share."""

    submit = Endpoint(_then(Calls.submit_ex, lambda s: s.job,
                            "Submit a job; options as for submit_ex()."))
    submit_ex = Endpoint(Calls.submit_ex)
    get = Endpoint(Calls.get)
    list_jobs = Endpoint(Calls.list_jobs)
    events = Endpoint(Calls.events)
    logs = Endpoint(Calls.logs)
    cancel = Endpoint(_action("cancel"))
    retry = Endpoint(Calls.retry)
    start = Endpoint(_action("start"))
    bulk = Endpoint(Calls.bulk)
    types = Endpoint(_listing("types"))
    queues = Endpoint(_listing("queues"))
    workers = Endpoint(_listing("workers"))


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


class Client(Methods):
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
        """Send one request and read its answer (a problem raises its Crisper error)."""
        try:
            response = self._http.request(call.method, call.path, params=call.params,
                                          json=call.json)
        except httpx.TransportError as exc:
            raise _unreachable(self._http.base_url, exc) from exc
        return call.answer(response)

    def bound(self, endpoint: Endpoint[P, T]) -> Callable[P, T]:
        @functools.wraps(endpoint.build)
        def method(*args: P.args, **kwargs: P.kwargs) -> T:
            return self.run(endpoint.build(*args, **kwargs))
        return method

    def wait(self, job_id: object, timeout: float | None = None, poll: float = 0.1) -> JobRecord:
        """Block until the job is succeeded, failed or cancelled; TimeoutError past `timeout`."""
        return wait_for_end(lambda: self.get(job_id), job_id, timeout, poll)

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


class AsyncClient(Methods):
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

    async def close(self) -> None:
        """The same as aclose(), so that both clients have the same methods."""
        await self.aclose()

    async def run(self, call: Call[T]) -> T:
        """Send one request and read its answer (a problem raises its Crisper error)."""
        try:
            response = await self._http.request(call.method, call.path, params=call.params,
                                                json=call.json)
        except httpx.TransportError as exc:
            raise _unreachable(self._http.base_url, exc) from exc
        return call.answer(response)

    def bound(self, endpoint: Endpoint[P, T]) -> Callable[P, Coroutine[Any, Any, T]]:
        @functools.wraps(endpoint.build)
        async def method(*args: P.args, **kwargs: P.kwargs) -> T:
            return await self.run(endpoint.build(*args, **kwargs))
        return method

    async def wait(self, job_id: object, timeout: float | None = None, poll: float = 0.1
                   ) -> JobRecord:
        """Wait, without blocking the loop, until the job has ended; TimeoutError past timeout."""
        return await await_end(lambda: self.get(job_id), job_id, timeout, poll)

    async def stream(self, job_id: object, last_event_id: str | None = None, *,
                     reconnect: bool = True) -> AsyncIterator[StreamEvent]:
        """Live events until the job's final state; a dropped connection resumes where it was."""
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
    """The Crisper exception for a problem+json answer: the class its problem type names
    (AccessDenied for an unnamed 401/403, else a plain CrisperError)."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    detail = str(body.get("detail") or f"HTTP {response.status_code}")
    kind = str(body.get("type", "")).rpartition(":")[2]
    cls = error_class_for(kind) if kind else None
    if cls is None:
        cls = AccessDenied if response.status_code in (401, 403) else CrisperError
    return cls.from_problem(detail, body)


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def job_from_json(j: dict[str, Any]) -> JobRecord:
    progress = j.get("progress") or {}
    return JobRecord(
        id=uuid.UUID(j["id"]), type=j["type"], queue=j["queue"], priority=j["priority"],
        state=JobState(j["state"]), tenant=j["tenant"], params=j["params"], result=j["result"],
        error=j["error"], tags=j["tags"], metadata=j.get("metadata") or {},
        attempt=j["attempt"], max_attempts=j["max_attempts"],
        timeout=j["timeout"], hard_timeout=j.get("hard_timeout"),
        idempotency_key=j["idempotency_key"],
        progress_current=progress.get("current"), progress_total=progress.get("total"),
        progress_message=progress.get("message"), worker=j["worker"],
        task_id=j.get("task_id"), source=j.get("source") or "crisper",
        cancel_requested_at=_when(j["cancel_requested_at"]), lease_expires_at=None,
        created_at=datetime.fromisoformat(j["created_at"]), run_at=_when(j["run_at"]),
        queued_at=_when(j["queued_at"]), started_at=_when(j["started_at"]),
        finished_at=_when(j["finished_at"]), cancelled_at=_when(j["cancelled_at"]),
        callback_url=j.get("callback_url"),
    )


def _limit(value: Duration | None) -> float | str | None:
    """A time limit as the API takes it: seconds, or the duration text as given."""
    if value is None or isinstance(value, int | float | str):
        return value
    return seconds(value)
