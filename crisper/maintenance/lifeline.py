"""The lifeline: running jobs whose lease ran out are retried or failed, with the reason."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from crisper import retry
from crisper.states import JobState
from crisper.store import jobs as job_sql

if TYPE_CHECKING:
    from crisper.app import Crisper

BATCH = 500
WORKER_LOST = {
    "type": "WorkerLost",
    "message": "the worker stopped renewing its lease (killed, frozen or unreachable)",
}


def rescue(crisper: Crisper, at: datetime) -> int:
    rescued = 0
    with crisper.store.transaction() as session:
        for lease in job_sql.expired_leases(session, at, BATCH):
            if lease.cancel_requested:
                target, retry_at = JobState.CANCELLED, None
            else:
                decision = retry.decide(lease.attempt, lease.max_attempts, lease.retry_policy)
                target = JobState.RETRYING if decision.retry else JobState.FAILED
                retry_at = at + timedelta(seconds=decision.delay) if decision.retry else None
            rescued += job_sql.finish(
                session, lease.id, lease.token, target, at, reason="worker_lost",
                worker=lease.worker, error=dict(WORKER_LOST),
                retry_at=retry_at,
            )
    return rescued
