"""`crisper.Client`: submit, read, wait for, stream and steer jobs over the HTTP API.

Answers are the same read models the local service returns (JobRecord, EventRecord,
LogRecord), and errors the same exceptions (JobNotFound, InvalidTransition, ...), so code
can move between in-process and remote use without change.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from crisper.durations import Duration, seconds
from crisper.errors import (
    AccessDenied,
    BrokerUnavailable,
    CrisperError,
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

    # -- jobs -------------------------------------------------------------------------------

    def submit(self, type: str, params: dict[str, Any] | None = None, *,
               queue: str | None = None, priority: int | None = None,
               delay: Duration | None = None, run_at: datetime | None = None,
               hold: bool = False, idempotency_key: str | None = None,
               tags: Sequence[str] = (), max_attempts: int | None = None,
               unique_key: str | None = None, on_duplicate: str = "return") -> JobRecord:
        return self.submit_ex(type, params, queue=queue, priority=priority, delay=delay,
                              run_at=run_at, hold=hold, idempotency_key=idempotency_key,
                              tags=tags, max_attempts=max_attempts, unique_key=unique_key,
                              on_duplicate=None if on_duplicate == "return" else on_duplicate
                              ).job

    def submit_ex(self, type: str, params: dict[str, Any] | None = None, **options: Any
                  ) -> Submitted:
        """Like submit(), and also tells whether the server replayed an earlier job."""
        body: dict[str, Any] = {"type": type, "params": params or {}}
        for name, value in options.items():
            if value is None or value == () or value is False:
                continue
            if name == "delay":
                value = seconds(value)
            elif name == "run_at":
                value = value.isoformat()
            elif name == "tags":
                value = list(value)
            body[name] = value
        response = self._call("POST", "/v1/jobs", json=body)
        return Submitted(job_from_json(response.json()), response.status_code == 200)

    def get(self, job_id: object) -> JobRecord:
        return job_from_json(self._call("GET", f"/v1/jobs/{job_id}").json())

    def list_jobs(self, *, states: Sequence[JobState | str] = (), types: Sequence[str] = (),
                  queues: Sequence[str] = (), tag: str | None = None, before: object = None,
                  limit: int = 50) -> list[JobRecord]:
        params: list[tuple[str, str]] = [("limit", str(limit))]
        params += [("state", JobState(s).value) for s in states]
        params += [("type", t) for t in types] + [("queue", q) for q in queues]
        if tag:
            params.append(("tag", tag))
        if before is not None:
            params.append(("before", str(before)))
        page = self._call("GET", "/v1/jobs", params=params).json()
        return [job_from_json(j) for j in page["items"]]

    def events(self, job_id: object) -> list[EventRecord]:
        rows = self._call("GET", f"/v1/jobs/{job_id}/events").json()
        return [EventRecord(id=r["id"], job_id=uuid.UUID(str(job_id)),
                            at=datetime.fromisoformat(r["at"]),
                            from_state=r["from_state"], to_state=r["to_state"],
                            reason=r["reason"], attempt=r["attempt"], worker=r["worker"],
                            detail=r["detail"]) for r in rows]

    def logs(self, job_id: object, after: int = 0, limit: int = 1000) -> list[LogRecord]:
        rows = self._call("GET", f"/v1/jobs/{job_id}/logs",
                          params={"after": after, "limit": limit}).json()
        return [LogRecord(id=r["id"], job_id=uuid.UUID(str(job_id)),
                          at=datetime.fromisoformat(r["at"]),
                          attempt=r["attempt"], level=r["level"], message=r["message"])
                for r in rows]

    def cancel(self, job_id: object) -> JobRecord:
        return job_from_json(self._call("POST", f"/v1/jobs/{job_id}/cancel").json())

    def retry(self, job_id: object) -> JobRecord:
        return job_from_json(self._call("POST", f"/v1/jobs/{job_id}/retry").json())

    def start(self, job_id: object) -> JobRecord:
        return job_from_json(self._call("POST", f"/v1/jobs/{job_id}/start").json())

    def bulk(self, action: str, *, ids: Sequence[object] | None = None,
             filter: dict[str, Any] | None = None) -> dict[str, Any]:
        """Cancel or retry many jobs by ids or by a filter; answers the counts."""
        body: dict[str, Any] = {"ids": [str(i) for i in ids]} if ids is not None else {}
        if filter is not None:
            body["filter"] = filter
        result: dict[str, Any] = self._call("POST", f"/v1/jobs/{action}", json=body).json()
        return result

    def wait(self, job_id: object, timeout: float | None = None, poll: float = 0.1) -> JobRecord:
        """Block until the job is succeeded, failed or cancelled; TimeoutError past `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = poll
        while True:
            job = self.get(job_id)
            if job.state.is_terminal:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job.state.value} after {timeout}s")
            time.sleep(interval)
            interval = min(interval * 1.5, 2.0)

    def stream(self, job_id: object, last_event_id: str | None = None, *,
               reconnect: bool = True) -> Iterator[StreamEvent]:
        """Live events until the job's final state; a dropped connection resumes where it was."""
        while True:
            headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
            try:
                with self._http.stream("GET", f"/v1/jobs/{job_id}/stream", headers=headers,
                                       timeout=httpx.Timeout(self._http.timeout.connect,
                                                             read=60.0)) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise error_from(response)
                    for event in parse_sse(response.iter_lines()):
                        if event.id is not None:
                            last_event_id = event.id
                        if event.kind:
                            yield event
                return  # the server ends the stream after the final state
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.ReadTimeout):
                if not reconnect:
                    raise
                time.sleep(0.2)

    # -- catalogue and operations -----------------------------------------------------------

    def types(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/v1/types").json()
        return result

    def queues(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/v1/queues").json()
        return result

    def workers(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/v1/workers").json()
        return result

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise CrisperError(f"cannot reach the Crisper API at {self._http.base_url}: {exc}"
                               ) from exc
        if response.status_code >= 400:
            raise error_from(response)
        return response


def parse_sse(lines: Iterator[str]) -> Iterator[StreamEvent]:
    """Server-Sent Events from text lines; an id-only message comes out with kind ""."""
    kind, event_id, seen = "", None, False
    data: list[str] = []
    for line in lines:
        if line == "":
            if seen:
                payload = json.loads("\n".join(data)) if data else {}
                yield StreamEvent(kind, payload, event_id)
            kind, data, event_id, seen = "", [], None, False
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        seen = True
        if name == "event":
            kind = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = value


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
        error=j["error"], tags=j["tags"], attempt=j["attempt"], max_attempts=j["max_attempts"],
        timeout=j["timeout"], idempotency_key=j["idempotency_key"],
        progress_current=progress.get("current"), progress_total=progress.get("total"),
        progress_message=progress.get("message"), worker=j["worker"], task_id=None,
        cancel_requested_at=_when(j["cancel_requested_at"]), lease_expires_at=None,
        created_at=datetime.fromisoformat(j["created_at"]), run_at=_when(j["run_at"]),
        queued_at=_when(j["queued_at"]), started_at=_when(j["started_at"]),
        finished_at=_when(j["finished_at"]), cancelled_at=_when(j["cancelled_at"]),
    )
