"""Webhook events, pure: the names a subscription may ask for, the event each job move raises,
and the JSON bodies deliveries carry (a job's final record, the envelope).

In the base layer (no store, no I/O): the store writes these into the outbox.
"""

from __future__ import annotations

import uuid
from dataclasses import fields
from datetime import datetime
from enum import Enum
from typing import Any

from crisper.states import JobState

JOB_SUCCEEDED = "job.succeeded"
JOB_FAILED = "job.failed"
JOB_CANCELLED = "job.cancelled"
JOB_RETRYING = "job.retrying"
JOB_POISONED = "job.poisoned"
WORKFLOW_FINISHED = "workflow.finished"  # emitted by workflows through store.deliveries.emit
BATCH_FINISHED = "batch.finished"
# The event of a job's own callback_url, and of a batch's callback webhooks.
JOB_CALLBACK = "job.callback"
BATCH_SUCCESS, BATCH_COMPLETE, BATCH_DEATH = "batch.success", "batch.complete", "batch.death"

SUBSCRIBABLE = (JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED, JOB_RETRYING, JOB_POISONED,
                WORKFLOW_FINISHED, BATCH_FINISHED)


def job_event(target: JobState, reason: str) -> str | None:
    """The event a job's move to `target` raises, or None if it raises none.

    A job failed because it kept killing its workers raises job.poisoned (not job.failed):
    subscribe to both to hear of every failure.
    """
    if target is JobState.FAILED:
        return JOB_POISONED if reason == "poisoned" else JOB_FAILED
    return {JobState.SUCCEEDED: JOB_SUCCEEDED, JobState.CANCELLED: JOB_CANCELLED,
            JobState.RETRYING: JOB_RETRYING}.get(target)


def plain(value: Any) -> Any:
    """JSON-ready: times as ISO 8601, ids as text, states as their names."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


_JOB_FIELDS = ("id", "type", "queue", "state", "tenant", "params", "result", "error", "tags",
               "metadata", "attempt", "max_attempts", "created_at", "started_at", "finished_at",
               "cancelled_at", "batch_id")


def job_body(record: Any) -> dict[str, Any]:
    """What a job event tells: the job's record as it stands after the move."""
    names = {f.name for f in fields(record)}
    return {name: plain(getattr(record, name)) for name in _JOB_FIELDS if name in names}


def envelope(event: str, event_id: uuid.UUID, at: datetime, data: dict[str, Any]
             ) -> dict[str, Any]:
    """Every webhook body: the event, its id (the same on every redelivery), time and data."""
    return {"event": event, "event_id": str(event_id), "at": at.isoformat(), "data": data}
