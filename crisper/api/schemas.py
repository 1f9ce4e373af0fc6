"""The API's request and response bodies; the OpenAPI document is generated from these."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from crisper.bodies import Name, Tag, Timestamp
from crisper.records import EventRecord, JobRecord, LogRecord
from crisper.service import BulkResult
from crisper.states import TERMINAL, JobState


class Problem(BaseModel):
    """An RFC 9457 problem: every error the API answers has this shape."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(description="a URI naming the kind of problem")
    title: str
    status: int
    detail: str = Field(description="a sentence saying what went wrong and how to fix it")
    instance: str | None = None


# -- jobs -----------------------------------------------------------------------------------

# The bodies the dashboard shares (a job to submit, a batch) are in crisper/bodies.py.

class Progress(BaseModel):
    current: float | None
    total: float | None
    percent: float | None
    message: str | None


class JobError(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str | None = None
    message: str | None = None
    traceback: str | None = None


class JobLinks(BaseModel):
    self: str
    cancel: str
    retry: str
    start: str
    events: str
    logs: str
    stream: str


OBSERVED_NOTICE = (
    "observed Celery task: Crisper records it but does not control it; cancel sends Celery's "
    "revoke(terminate=True) to the workers, retry and start are not available")


class Job(BaseModel):
    id: uuid.UUID
    type: str
    state: JobState
    queue: str
    priority: int
    tenant: str
    params: dict[str, Any]
    tags: list[str]
    metadata: dict[str, str] = Field(default_factory=dict)
    progress: Progress
    attempt: int
    max_attempts: int
    result: Any = None
    error: JobError | None = None
    dispatch_error: str | None = Field(
        None, description="why this queued job's wake-up message could not be published; "
        "the relay tries again with back-off")
    idempotency_key: str | None
    timeout: float | None = Field(description="the soft time limit, seconds")
    hard_timeout: float | None = Field(
        None, description="the job's own hard time limit (seconds); null: its type's")
    worker: str | None
    cancel_requested_at: datetime | None
    created_at: datetime
    run_at: datetime | None
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    cancelled_at: datetime | None
    source: Literal["crisper", "observed"] = Field(
        "crisper", description="observed: a plain Celery task of the wrapped app, recorded "
        "through Celery's signals; Crisper does not control it (docs/observe.md)")
    task_id: str | None = Field(None, description="an observed task's Celery task id")
    notice: str | None = Field(None, description="what the actions mean for this job, "
                               "when it is not Crisper's to steer")
    workflow_id: uuid.UUID | None = Field(None, description="the workflow this job is a node of")
    workflow_node: str | None = Field(None, description="its node name in that workflow")
    callback_url: str | None = None
    batch_id: uuid.UUID | None = None
    links: JobLinks

    @classmethod
    def of(cls, r: JobRecord) -> Job:
        base = f"/v1/jobs/{r.id}"
        return cls(
            id=r.id, type=r.type, state=r.state, queue=r.queue, priority=r.priority,
            tenant=r.tenant, params=r.params, tags=list(r.tags), metadata=dict(r.metadata),
            progress=Progress(current=r.progress_current, total=r.progress_total,
                              percent=r.percent, message=r.progress_message),
            attempt=r.attempt, max_attempts=r.max_attempts, result=r.result,
            error=JobError(**r.error) if r.error else None, dispatch_error=r.dispatch_error,
            idempotency_key=r.idempotency_key,
            timeout=r.timeout, hard_timeout=r.hard_timeout, worker=r.worker,
            cancel_requested_at=r.cancel_requested_at,
            created_at=r.created_at, run_at=r.run_at, queued_at=r.queued_at,
            started_at=r.started_at, finished_at=r.finished_at, cancelled_at=r.cancelled_at,
            source="observed" if r.source == "observed" else "crisper",
            task_id=r.task_id if r.source == "observed" else None,
            notice=OBSERVED_NOTICE if r.source == "observed" else None,
            workflow_id=r.workflow_id, workflow_node=r.workflow_node,
            callback_url=r.callback_url, batch_id=r.batch_id,
            links=JobLinks(self=base, cancel=f"{base}/cancel", retry=f"{base}/retry",
                           start=f"{base}/start", events=f"{base}/events", logs=f"{base}/logs",
                           stream=f"{base}/stream"),
        )


class JobPage(BaseModel):
    items: list[Job]
    next_cursor: uuid.UUID | None = Field(description="pass as ?before= for the next page")
    next: str | None = Field(description="the next page's URL, or null on the last page")


class Event(BaseModel):
    id: int
    at: datetime
    from_state: str | None = Field(description="null: the job was created here, or a note")
    to_state: str | None = Field(description="null: a note (a cancel request), not a move")
    reason: str
    attempt: int
    worker: str | None
    detail: dict[str, Any] | None

    @classmethod
    def of(cls, e: EventRecord) -> Event:
        return cls(id=e.id, at=e.at, from_state=e.from_state, to_state=e.to_state,
                   reason=e.reason, attempt=e.attempt, worker=e.worker, detail=e.detail)


class LogLine(BaseModel):
    id: int
    at: datetime
    attempt: int
    level: str
    message: str

    @classmethod
    def of(cls, line: LogRecord) -> LogLine:
        return cls(id=line.id, at=line.at, attempt=line.attempt, level=line.level,
                   message=line.message)


# -- bulk -----------------------------------------------------------------------------------

def _refuse_nulls(data: Any) -> Any:
    """An explicit null where the document allows none: leave the field out instead."""
    if isinstance(data, dict):
        nulls = sorted(k for k, v in data.items() if v is None)
        if nulls:
            raise ValueError(f"{', '.join(map(str, nulls))}: leave the field out instead of null")
    return data


class BulkFilter(BaseModel):
    """Which jobs: every given field must match. At least one field is required."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})
    states: list[JobState] = Field(default_factory=list, min_length=1)
    types: list[Name] = Field(default_factory=list, min_length=1)
    queues: list[Name] = Field(default_factory=list, min_length=1)
    tag: Tag | SkipJsonSchema[None] = None
    created_after: Timestamp | SkipJsonSchema[None] = None
    created_before: Timestamp | SkipJsonSchema[None] = None
    finished_after: Timestamp | SkipJsonSchema[None] = None
    finished_before: Timestamp | SkipJsonSchema[None] = None

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        return _refuse_nulls(data)

    def is_empty(self) -> bool:
        return not self.model_fields_set


class BulkBody(BaseModel):
    """Either `ids` or `filter` (a filter must narrow something: no "every job" by accident)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "oneOf": [{"required": ["ids"]}, {"required": ["filter"]}]})
    ids: Annotated[list[uuid.UUID], Field(min_length=1, max_length=10_000)] | SkipJsonSchema[
        None] = None
    filter: BulkFilter | SkipJsonSchema[None] = None
    limit: int = Field(10_000, ge=1, le=100_000, description="act on at most this many jobs")

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        return _refuse_nulls(data)

    @model_validator(mode="after")
    def _one_of(self) -> BulkBody:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("give either ids or filter")
        if self.filter is not None and self.filter.is_empty():
            raise ValueError("the filter matches every job; narrow it (states, types, ...)")
        return self


class BulkAnswer(BaseModel):
    matched: int
    changed: int
    skipped: int
    errors: dict[str, str] = Field(description="job id -> why it was skipped")

    @classmethod
    def of(cls, r: BulkResult) -> BulkAnswer:
        return cls(matched=r.matched, changed=r.changed, skipped=r.skipped, errors=r.errors)


# -- types, queues, workers, health ---------------------------------------------------------

class JobTypeInfo(BaseModel):
    name: str
    queue: str
    priority: int
    timeout: float | None = Field(description="the soft time limit, seconds")
    hard_timeout: float | None = Field(None, description="the hard time limit, seconds")
    cancel_grace: float | None = Field(None, description="seconds a cancel may be ignored")
    retention: dict[str, float | None] | None = Field(
        None, description="seconds a finished job is kept, per final state; payload: before "
        "its params, result and logs are dropped (null: never)")
    max_attempts: int
    description: str
    params: dict[str, Any] = Field(description="the parameters' JSON Schema")


class QueueInfo(BaseModel):
    name: str
    depth: int = Field(description="jobs queued and waiting for a worker")
    running: int
    oldest_waiting_seconds: float | None
    throughput_last_minute: int = Field(description="jobs that finished in the last minute")


class LimitInfo(BaseModel):
    name: str = Field(description="the shared limit's name, or the job type owning the limit")
    kind: str = Field(description="rate or concurrency")
    shared: bool = Field(description="a named limit (crisper.rate_limit/concurrency_limit)")
    types: list[str] = Field(description="job types drawing on it")
    limit: int = Field(description="starts per period (rate) or jobs at once (concurrency)")
    period_seconds: float | None
    burst: int | None
    keyed: bool = Field(description="one bucket or slot set per rate_key/concurrency_key")
    tokens: int | None = Field(
        description="starts allowed right now (rate, not keyed; null if Redis is unreachable)")
    running: int | None = Field(description="jobs holding a slot (concurrency, all keys)")
    deferred: int = Field(description="jobs waiting for this limit now")


class WorkerInfo(BaseModel):
    name: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    started_at: datetime
    last_heartbeat_at: datetime
    status: str = Field(description="alive, lost (heartbeats stopped) or stopped")
    running_jobs: list[uuid.UUID]


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


TERMINAL_STATES = sorted(s.value for s in TERMINAL)
