"""What one observed Celery task looks like between its signals and the store: pure.

A plain Celery task is seen by several processes (the caller publishes it, the worker's main
process receives it, a pool child runs it), each in its own order. Every sighting becomes an
`Observation`; observations of one task merge into one, here in memory and again in SQL, by
the same rule: the later step wins — later attempt first (a retry is a new attempt), then
the step's rank within the attempt — and a field a step does not know keeps the value an
earlier step gave it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crisper.states import JobState

S = JobState
# A step's rank within one attempt; terminal outcomes share the top rank, so a real outcome
# flushed late still replaces a "lost" verdict given while its worker looked dead.
RANK: dict[JobState, int] = {
    S.QUEUED: 1, S.RUNNING: 2, S.RETRYING: 3,
    S.SUCCEEDED: 4, S.FAILED: 4, S.CANCELLED: 4,
}
TRUNCATED = "…(truncated)"


@dataclass(slots=True)
class Observation:
    """One task's latest known step. `raw` holds args/kwargs until the flusher encodes them.
    Treated as immutable (merge makes a new one); not frozen, which makes it cheaper to build
    in a task's signal handler."""

    task_id: str
    type: str
    state: JobState
    at: datetime  # when this step was seen
    attempt: int = 1
    queue: str | None = None
    worker: str | None = None
    raw: tuple[Any, Any] | None = None
    params: dict[str, Any] | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    max_attempts: int | None = None
    run_at: datetime | None = None  # the message's eta (countdown), if any
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancelled_at: datetime | None = None

    @property
    def order(self) -> tuple[int, int]:
        return (self.attempt, RANK[self.state])


def merge(old: Observation, new: Observation) -> Observation:
    """The two sightings as one: the later step's state and outcome, every known fact kept.
    (Built field by field, not with dataclasses.replace: this runs once per task per process,
    in the signal handler of its second step.)"""
    later, earlier = (new, old) if new.order >= old.order else (old, new)
    return Observation(
        later.task_id, later.type, later.state, later.at, later.attempt,
        later.queue or earlier.queue,
        later.worker or earlier.worker,
        old.raw if old.raw is not None else new.raw,
        old.params if old.params is not None else new.params,
        later.result if later.result is not None else earlier.result,
        later.error or earlier.error,
        max(old.max_attempts or 0, new.max_attempts or 0) or None,
        later.run_at or earlier.run_at,
        _first(old.created_at or old.at, new.created_at or new.at),
        later.started_at or earlier.started_at,
        later.finished_at or earlier.finished_at,
        later.cancelled_at or earlier.cancelled_at,
    )


def _first(a: datetime, b: datetime) -> datetime:
    return a if a <= b else b


def capped_json(value: Any, limit: int) -> Any:
    """`value` as JSON the store can hold, at most about `limit` characters.

    Anything JSON cannot express is written as its repr; a value over the cap becomes
    {"truncated": true, "size": n, "preview": first `limit` characters}. A value JSON holds as
    it is, under the cap, is returned as it is (the batch encodes it again; decoding it here
    would only cost the flusher a second pass).
    """
    odd: list[bool] = []

    def fallback(obj: Any) -> str:
        odd.append(True)
        return repr(obj)

    try:
        text = json.dumps(value, default=fallback, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):  # circular or otherwise broken
        text, odd = json.dumps(repr(value)[:limit]), [True]
    if len(text) <= limit:
        return json.loads(text) if odd else value
    return {"truncated": True, "size": len(text), "preview": text[:limit] + TRUNCATED}


def encode_params(raw: tuple[Any, Any] | None, limit: int) -> dict[str, Any]:
    """Celery's positional and keyword arguments as the job's params (size-capped)."""
    if raw is None:
        return {}
    args, kwargs = raw
    if not args and not kwargs:  # the common no-argument call: nothing to encode
        return {"args": [], "kwargs": {}}
    encoded = capped_json({"args": list(args or ()), "kwargs": dict(kwargs or {})}, limit)
    return encoded if "args" in encoded else {"args": encoded, "kwargs": {}}


def error_of(exc: BaseException | None, traceback: str | None, limit: int,
             type_name: str | None = None) -> dict[str, Any]:
    """An exception as the job's error: its type, message and (capped) traceback."""
    message = str(exc) if exc is not None else ""
    error: dict[str, Any] = {
        "type": type_name or (type(exc).__name__ if exc is not None else "Error"),
        "message": message[:limit],
    }
    if traceback:
        error["traceback"] = traceback[-limit:]
    return error
