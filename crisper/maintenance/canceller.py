"""Forced cancellation: a running job that ignored its cancel request past the grace period.

Only a job running in a prefork pool child can be stopped by force (its process is killed).
A job claimed by a worker on another pool (threads, solo, gevent, eventlet: started other than
by `crisper worker`, which refuses them) is never recorded as force-cancelled: it stays
running, with one event saying why it could not be forced, until its body checks for the
cancel request or ends.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from crisper.engine.dispatcher import Dispatcher
from crisper.registry import Registry
from crisper.settings import Settings
from crisper.states import JobState
from crisper.store import Store
from crisper.store import attempts as attempt_sql
from crisper.store import statements as statement_sql
from crisper.store import sweeps as sweep_sql

log = logging.getLogger(__name__)
BATCH = 100


def enforce(store: Store, settings: Settings, registry: Registry, dispatcher: Dispatcher,
            at: datetime) -> int:
    """Record the job cancelled (fencing out its worker), then kill the process running it."""
    default = settings.cancel_grace_seconds
    own = {t.name: t.options.cancel_grace for t in registry if t.options.cancel_grace is not None}
    before = at - timedelta(seconds=default)
    with store.transaction() as session:
        overdue = sweep_sql.overdue_cancels(session, before, BATCH, other_than=sorted(own))
        for name, grace in own.items():  # job types with their own grace period
            overdue += sweep_sql.overdue_cancels(session, at - timedelta(seconds=grace), BATCH,
                                                 types=[name])
        stopped = [
            lease for lease in overdue
            if attempt_sql.finish(session, lease.id, lease.token, JobState.CANCELLED, at,
                                  reason="cancel_forced", worker=lease.worker)
        ]
        for lease in sweep_sql.unforcible_cancels(session, before, BATCH):
            explain_unforcible(session, lease, at)
    for lease in stopped:
        if lease.task_id:
            try:
                dispatcher.revoke(lease.task_id, "SIGKILL")
            except Exception as exc:  # the lease fence already protects the outcome
                log.warning("could not terminate job %s: %s", lease.id, exc)
    return len(stopped)


UNFORCIBLE = ("the job runs on a worker pool that cannot stop it by force (not prefork); it "
              "stops at its next cancellation check, or when it ends")


def explain_unforcible(session: Session, lease: sweep_sql.Lease, at: datetime) -> None:
    """Say once, in the job's history, why an overdue cancel was not forced."""
    log.warning("job %s: cancel not forced: %s", lease.id, UNFORCIBLE)
    statement_sql.record_note(session, lease.id, "cancel_not_forcible", at, lease.attempt,
                              worker=lease.worker, detail={"why": UNFORCIBLE})
