"""The lifeline: running jobs whose lease ran out are rescued (queued again), with the reason.

Losing a worker is not the job's failure. A job whose lease expired goes back to `queued`
without spending one of its attempts. Only a job that keeps killing its workers is stopped:
after `max_rescues` unannounced losses it fails with reason `poisoned`. Jobs marked
`interrupted` by an announced shutdown (SIGTERM, a deploy) are rescued too, and do not count.
A running job asked to cancel whose worker is lost ends cancelled.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from crisper.errors import StoreUnavailable
from crisper.maintenance.runbook import this_process
from crisper.settings import Settings
from crisper.states import JobState, lost_worker
from crisper.store import Store
from crisper.store import attempts as attempt_sql
from crisper.store import schedules as schedule_sql
from crisper.store import sweeps as sweep_sql

log = logging.getLogger(__name__)
BATCH = 500
NEVER = datetime.min.replace(tzinfo=UTC)  # no lease expired before it
WORKER_LOST = {
    "type": "WorkerLost",
    "message": "the worker stopped renewing its lease (killed, frozen or unreachable)",
}
POISONED = {
    "type": "Poisoned",
    "message": "the job's worker was lost {n} times without notice; it is not run again",
}


class Lifeline:
    """The lease reaper, which does not mistake its own database outage for lost workers.

    A lease that expired while the lifeline itself could not reach the database says nothing
    about its worker: the worker was most likely cut off too, and renews the lease as soon as
    the database is back. So, after an outage of its own (from `blind_since`, the last moment
    it saw the database, to `seen_since`, the first moment it saw it again), the lifeline
    rescues only leases that had expired before the outage began, until it has seen the
    database continuously for a whole lease period: every live worker has renewed by then,
    and whatever is still expired is truly lost. A fresh lifeline knows of no outage and
    rescues at once (a scheduler restarted after its workers died does not wait), unless its
    first look fails: then it cannot tell when the outage began, and rescues nothing until it
    has seen the database for a whole lease period (a scheduler started during an outage
    would otherwise re-run jobs whose workers were only cut off and renew once it is over).

    Seeing the database again means writing to it: a full or read-only disk still answers
    reads while every worker's renewal fails, so until the whole lease period has passed, each
    pass also records the lifeline's run, and a pass whose write fails is blind like any other.
    """

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._last_seen: datetime | None = None  # wall time of the last successful tick
        self._blind_since: datetime | None = None
        self._seen_since = 0.0  # monotonic time the database came back

    def __call__(self, at: datetime) -> int:
        try:
            rescued = self._rescue(at, self._cutoff(at))
        except StoreUnavailable:
            if self._blind_since is None:
                # Never seen the database: the outage may have begun before this process did
                self._blind_since = self._last_seen or NEVER
            self._seen_since = 0.0
            raise
        if self._blind_since is not None and not self._seen_since:
            self._seen_since = time.monotonic()
        self._last_seen = at
        return rescued

    def _cutoff(self, at: datetime) -> datetime:
        """Leases that expired before this moment count as lost."""
        if self._blind_since is None:
            return at
        if self._seen_since and time.monotonic() - self._seen_since >= \
                self.settings.lease_seconds:
            self._blind_since = None
            return at
        return min(at, self._blind_since)

    def _rescue(self, at: datetime, cutoff: datetime) -> int:
        cap = self.settings.max_rescues
        rescued = 0
        with self.store.transaction() as session:
            for lease in sweep_sql.expired_leases(session, cutoff, BATCH):
                rescued += _rescue_one(session, lease, at, cap)
            if self._blind_since is not None:  # recovering: a read alone proves nothing
                schedule_sql.note_run(session, "lifeline", self.settings.tick_seconds, at,
                                      rescued, this_process())
        return rescued


def _rescue_one(session: Session, lease: sweep_sql.Lease, at: datetime, cap: int) -> bool:
    fate = lost_worker(lease.cancel_requested, lease.interrupted, lease.rescues, cap)
    if fate.target is JobState.QUEUED:
        detail = {"rescues": lease.rescues + 1} if fate.counted else None
        return attempt_sql.rescue(session, lease.id, lease.token, at, reason=fate.reason,
                                  counted=fate.counted, worker=lease.worker, detail=detail)
    error = dict(WORKER_LOST)
    if fate.target is JobState.FAILED:  # rescued `cap` times already: one loss too many
        log.warning("job %s lost its worker %d times: failed as poisoned", lease.id, cap + 1)
        error = {**POISONED, "message": POISONED["message"].format(n=cap + 1)}
    return attempt_sql.finish(session, lease.id, lease.token, fate.target, at,
                              reason=fate.reason, worker=lease.worker, error=error)


def rescue(store: Store, settings: Settings, at: datetime) -> int:
    """One pass with no memory of earlier outages (tests, one-off runs)."""
    return Lifeline(store, settings)(at)
