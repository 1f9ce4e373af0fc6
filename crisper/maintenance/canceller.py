"""Forced cancellation: a running job that ignored its cancel request past the grace period."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from crisper.states import JobState
from crisper.store import jobs as job_sql

if TYPE_CHECKING:
    from crisper.app import Crisper

log = logging.getLogger(__name__)
BATCH = 100


def enforce(crisper: Crisper, at: datetime) -> int:
    """Record the job cancelled (fencing out its worker), then kill the process running it."""
    default = crisper.settings.cancel_grace_seconds
    own = {t.name: t.options.cancel_grace for t in crisper.registry
           if t.options.cancel_grace is not None}
    with crisper.store.transaction() as session:
        overdue = job_sql.overdue_cancels(session, at - timedelta(seconds=default), BATCH,
                                          other_than=sorted(own))
        for name, grace in own.items():  # job types with their own grace period
            overdue += job_sql.overdue_cancels(session, at - timedelta(seconds=grace), BATCH,
                                               types=[name])
        stopped = [
            lease for lease in overdue
            if job_sql.finish(session, lease.id, lease.token, JobState.CANCELLED, at,
                              reason="cancel_forced", worker=lease.worker)
        ]
    for lease in stopped:
        if lease.task_id:
            try:
                crisper.celery.control.revoke(lease.task_id, terminate=True, signal="SIGKILL")
            except Exception as exc:  # the lease fence already protects the outcome
                log.warning("could not terminate job %s: %s", lease.id, exc)
    return len(stopped)
