"""How a job body's run becomes an Outcome: its result, or what its exception decides."""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from celery.exceptions import SoftTimeLimitExceeded

from crisper import retry as retry_policy
from crisper.engine.async_bodies import finish_body
from crisper.errors import Cancelled
from crisper.states import JobState
from crisper.store import utcnow

if TYPE_CHECKING:
    from crisper.engine.context import JobContext
    from crisper.registry import JobType
    from crisper.store.attempts import Claimed

S = JobState


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended; `state` None means the lease was lost and nothing may be written."""

    state: JobState | None
    reason: str
    result: Any = None
    error: dict[str, Any] | None = None
    retry_at: datetime | None = None


def execute(job_type: JobType, ctx: JobContext, job: Claimed) -> Outcome:
    """Call the job function and turn whatever happens into an Outcome."""
    try:
        ctx.check_cancelled()  # asked to stop between its claim and now
        params = {**ctx.inputs, **job.params}  # inputs: a node's delivered parent result(s)
        result = finish_body(job_type.func(ctx, **params), ctx)  # awaits an async body
        json.dumps(result)
    except Cancelled:
        if ctx.lease_revoked:
            return Outcome(None, "lease_lost")
        if ctx.cancel_requested:
            return Outcome(S.CANCELLED, "cancelled")
        # Stopped itself: the lease could not be renewed (database unreachable). Hand the job
        # back, fenced, once the database answers; if the lifeline took it first, nothing is.
        return Outcome(S.QUEUED, "lease_expired")
    except SoftTimeLimitExceeded as exc:
        return _failure(job_type, job, ctx, exc, "timeout")
    except Exception as exc:
        return _failure(job_type, job, ctx, exc, "error")
    if ctx.lease_revoked:
        return Outcome(None, "lease_lost")
    return Outcome(S.SUCCEEDED, "succeeded", result=result)  # written fenced, however late


def _failure(job_type: JobType, job: Claimed, ctx: JobContext, exc: BaseException,
             reason: str) -> Outcome:
    error = {
        "type": type(exc).__name__,
        "message": str(exc) or type(exc).__name__,
        "traceback": "".join(traceback.format_exception(exc))[-20_000:],
    }
    if ctx.lease_revoked:
        return Outcome(None, "lease_lost")
    if ctx.cancel_requested:
        return Outcome(S.CANCELLED, "cancelled", error=error)
    policy = job_type.options.retry
    decision = retry_policy.decide(job.spent, job.max_attempts, job.retry_policy, exc,
                                   policy.retry_on, policy.dont_retry_on)
    if decision.retry:
        # An exception may name its own delay (a Celery-style `self.retry(countdown=...)`).
        delay = getattr(exc, "retry_delay", None)
        delay = decision.delay if delay is None else float(delay)
        return Outcome(S.RETRYING, reason, error=error,
                       retry_at=utcnow() + timedelta(seconds=delay))
    return Outcome(S.FAILED, reason, error=error)
