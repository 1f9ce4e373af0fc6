"""A submit's own time limits: checked, and resolved against its job type's. Pure.

A job type's `timeout=("1h55m", "2h")` is compiled into its Celery task. A submit may give
its own `soft_time_limit` and `time_limit` (Celery's names and meanings: the soft limit raises
SoftTimeLimitExceeded in the body, the hard one kills the process); they are stored on the job
and travel in its wake-up message, which Celery's pool applies instead of the task's.
"""

from __future__ import annotations

from dataclasses import dataclass

from crisper.durations import Duration, seconds
from crisper.errors import InvalidRequest

MAX_TIME_LIMIT_SECONDS = 7 * 86400.0  # a week: longer is a mistake more often than a need


@dataclass(frozen=True)
class TimeLimits:
    """A job's own limits in seconds: `hard` always set; `soft` None means no soft limit
    before the hard one (the type's soft limit did not come before it)."""

    soft: float | None
    hard: float


def own_limits(soft: Duration | None, hard: Duration | None, *, type_soft: float | None,
               type_hard: float | None, kill_grace: float) -> TimeLimits | None:
    """The limits a submit asks for, completed from its type's; None when it asks for none.

    - only `soft`: the hard limit follows it by the type's kill grace (the type's hard minus
      its soft, else the app's `kill_grace`);
    - only `hard`: the type's soft limit is kept if it comes first, else there is none;
    - both: the hard limit may not come before the soft one.
    Each is more than 0 and at most a week; InvalidRequest names the field otherwise.
    """
    if soft is None and hard is None:
        return None
    soft_s = _checked("soft_time_limit", soft)
    hard_s = _checked("time_limit", hard)
    if hard_s is None:
        assert soft_s is not None
        grace = (type_hard - type_soft) if type_soft is not None and type_hard is not None \
            else kill_grace
        return TimeLimits(soft_s, soft_s + grace)
    if soft_s is None:
        kept = type_soft if type_soft is not None and type_soft < hard_s else None
        return TimeLimits(kept, hard_s)
    if hard_s < soft_s:
        raise InvalidRequest("time_limit", f"the hard limit ({hard_s:g} s) may not come before "
                             f"the soft one ({soft_s:g} s)")
    return TimeLimits(soft_s, hard_s)


def _checked(field: str, value: Duration | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidRequest(field, "must be a duration, not true/false")
    try:
        found = seconds(value)
    except InvalidRequest as exc:
        raise InvalidRequest(field, exc.reason) from None
    if not 0 < found <= MAX_TIME_LIMIT_SECONDS:
        raise InvalidRequest(field, f"must be more than 0 and at most "
                             f"{MAX_TIME_LIMIT_SECONDS:g} s (a week), got {found:g}")
    return found
