"""Read models: what a job, an event, a log line and a worker look like outside the store."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Self

from crisper.states import JobState


class Record:
    """A read model built from a result row with a column for each of its fields."""

    @classmethod
    def from_row(cls, row: Any) -> Self:
        mapping = row._mapping
        return cls(**{f.name: mapping[f.name] for f in fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True)
class JobRecord:
    id: uuid.UUID
    type: str
    queue: str
    priority: int
    state: JobState
    tenant: str
    params: dict[str, Any]
    result: Any
    error: dict[str, Any] | None
    tags: list[str]
    attempt: int
    max_attempts: int
    timeout: float | None
    idempotency_key: str | None
    progress_current: float | None
    progress_total: float | None
    progress_message: str | None
    worker: str | None
    task_id: str | None
    cancel_requested_at: datetime | None
    lease_expires_at: datetime | None
    created_at: datetime
    run_at: datetime | None
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    cancelled_at: datetime | None
    unique_key: str | None = None
    schedule_name: str | None = None
    fire_time: datetime | None = None
    dispatch_error: str | None = None  # why its wake-up message waits to be published again
    metadata: dict[str, str] = field(default_factory=dict)  # searchable string pairs
    callback_url: str | None = None  # the final record is POSTed there (crisper/webhooks)
    batch_id: uuid.UUID | None = None
    hard_timeout: float | None = None  # set when the submit gave its own time limits
    source: str = "crisper"  # "observed": a plain Celery task Crisper records but does not run
    workflow_id: uuid.UUID | None = None  # the workflow this job is a node of
    workflow_node: str | None = None  # its node name there

    @classmethod
    def from_row(cls, row: Any) -> JobRecord:
        m = row._mapping
        values = {f.name: m[f.name] for f in fields(cls)}
        values["state"] = JobState(values["state"])
        values["metadata"] = values["metadata"] or {}
        return cls(**values)

    @classmethod
    def from_new_row(cls, row: dict[str, Any]) -> JobRecord:
        """The record of a job from the row a submit inserted: what no submit sets is None."""
        empty = {"result": None, "error": None, "progress_current": None,
                 "progress_total": None, "progress_message": None, "worker": None,
                 "task_id": None, "cancel_requested_at": None, "lease_expires_at": None,
                 "started_at": None, "finished_at": None, "cancelled_at": None}
        values = {**empty, **{k: v for k, v in row.items() if k in cls.__dataclass_fields__}}
        values["state"] = JobState(values["state"])
        values["metadata"] = values.get("metadata") or {}
        return cls(**values)

    @property
    def percent(self) -> float | None:
        if self.progress_total and self.progress_current is not None:
            return round(100.0 * self.progress_current / self.progress_total, 1)
        return None


@dataclass(frozen=True)
class EventRecord(Record):
    id: int
    job_id: uuid.UUID
    at: datetime
    from_state: str | None  # None: the job was created (or a note)
    to_state: str | None  # None: a note, not a move (a cancel request); see states.NOTES
    reason: str
    attempt: int
    worker: str | None
    detail: dict[str, Any] | None


@dataclass(frozen=True)
class LogRecord(Record):
    id: int
    job_id: uuid.UUID
    at: datetime
    attempt: int
    level: str
    message: str


@dataclass(frozen=True)
class WorkerRecord(Record):
    name: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    started_at: datetime
    last_heartbeat_at: datetime
    stopped_at: datetime | None
