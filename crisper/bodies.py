"""Request and response bodies that the HTTP API and the dashboard share (a job to submit,
a batch's counters), so that the dashboard need not import the API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from crisper.names import KEY_PATTERN, QUEUE_PATTERN, TAG_PATTERN, json_problem
from crisper.priorities import PRIORITY_MAX
from crisper.store.batches import BatchRecord

MAX_DELAY = 10 * 366 * 86400.0
NO_NUL = r"^[^\x00]*$"  # PostgreSQL cannot store NUL characters in text or JSON
KEY = f"^{KEY_PATTERN.pattern}$"  # printable and not blank (crisper.names)
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=NO_NUL)]
Tag = Annotated[str, Field(min_length=1, max_length=100, pattern=f"^{TAG_PATTERN.pattern}$",
                           description="see docs/api.md for the tag rule")]
QueueName = Annotated[str, Field(min_length=1, max_length=64,
                                 pattern=f"^{QUEUE_PATTERN.pattern}$",
                                 description="a declared queue (docs/flow-control.md)")]


def _text_time(value: Any) -> Any:
    """A time is RFC 3339 text, as documented: not a number of seconds, which pydantic's lax
    mode would read as a Unix time."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError("give an RFC 3339 date-time, such as 2025-01-31T12:00:00Z")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_text_time)]


LimitValue = Annotated[float | Annotated[str, StringConstraints(max_length=32)],
                      "seconds, or a duration such as '1h55m'"]


class SubmitBody(BaseModel):
    """A job to submit. The OpenAPI document narrows `type` and `params` to the app's job types."""

    model_config = ConfigDict(extra="forbid",
                              json_schema_extra={"not": {"required": ["run_at", "delay"]}})
    type: Name = Field(description="a registered job type")
    params: dict[str, Any] = Field(default_factory=dict)
    queue: QueueName | None = None
    priority: int | None = Field(None, ge=0, le=PRIORITY_MAX, description="higher runs first")
    run_at: Timestamp | None = Field(None, description="not before this time")
    delay: float | None = Field(None, ge=0, le=MAX_DELAY, description="run after this many seconds")
    hold: bool = Field(False, description="create held; it runs after POST .../start")
    idempotency_key: str | None = Field(None, min_length=1, max_length=300, pattern=KEY)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    metadata: dict[str, str] | None = Field(
        None, description="up to 16 text pairs, searchable by exact match (GET /v1/jobs?meta=)")
    max_attempts: int | None = Field(None, ge=1, le=1000)
    unique_key: str | None = Field(None, min_length=1, max_length=300, pattern=KEY,
                                   description="one active job per key (with the type's own)")
    on_duplicate: Literal["return", "reject"] = Field(
        "return", description="a unique key held by an active job: answer that job (200), or 409")
    callback_url: str | None = Field(
        None, max_length=2000, description="the job's final record is POSTed here, signed, when "
        "it ends (docs/integrations.md#webhooks)")
    soft_time_limit: LimitValue | None = Field(
        None, description="this job's soft time limit instead of its type's: seconds or a "
        "duration ('10m'); the body gets SoftTimeLimitExceeded")
    time_limit: LimitValue | None = Field(
        None, description="this job's hard time limit: its process is killed; not before the "
        "soft one, at most a week")

    @model_validator(mode="after")
    def _check(self) -> SubmitBody:
        if self.delay is not None and self.run_at is not None:
            raise ValueError("give run_at or delay, not both")
        return self

    @field_validator("params")
    @classmethod
    def _storable(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Refused here, named, before anything deeper chokes on it (a 422, never a 500)."""
        problem = json_problem(params)
        if problem is not None:
            where, msg, _ = problem
            shown = ".".join(map(str, where[:8])) + (".…" if len(where) > 8 else "")
            raise ValueError(f"{shown or '(params)'}: {msg}")
        return params


class Batch(BaseModel):
    id: uuid.UUID
    description: str | None
    total: int
    succeeded: int
    failed: int
    cancelled: int
    pending: int
    callbacks: dict[str, Any]
    created_at: datetime
    finished_at: datetime | None
    success_fired_at: datetime | None
    complete_fired_at: datetime | None
    death_fired_at: datetime | None

    @classmethod
    def of(cls, b: BatchRecord) -> Batch:
        values = {k: v for k, v in b.__dict__.items() if k != "tenant"}
        return cls(**values, pending=b.pending)
