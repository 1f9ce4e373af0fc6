"""The JSON bodies deliveries carry: a job's final record, a batch's summary: pure."""

from __future__ import annotations

import uuid
from dataclasses import fields
from datetime import datetime
from enum import Enum
from typing import Any


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
