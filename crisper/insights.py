"""Read-side aggregates the dashboard shows: activity per minute, failure rates, failed groups.

A thin service over crisper/store/dashboard_stats.py; every figure is scoped to a tenant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from crisper.service import BulkResult
from crisper.store import dashboard_stats as sql
from crisper.store import utcnow
from crisper.store.dashboard_stats import FailedGroup
from crisper.store.jobs import JobFilter

if TYPE_CHECKING:
    from crisper.service import JobService
    from crisper.store import Store

FAILED_WINDOW = 5000  # the failed-jobs page groups the newest this many failed jobs
FAILED_GROUPS_SHOWN = 100


@dataclass(frozen=True)
class Minute:
    start: datetime
    submitted: int
    succeeded: int
    failed: int


@dataclass(frozen=True)
class TypeOutcome:
    type: str
    succeeded: int
    failed: int

    @property
    def failure_rate(self) -> float:
        total = self.succeeded + self.failed
        return self.failed / total if total else 0.0


def activity(store: Store, tenant: str | None, minutes: int = 60,
             now: datetime | None = None) -> list[Minute]:
    """One entry per minute of the last `minutes`, oldest first, the current minute last."""
    now = now or utcnow()
    last = int(now.timestamp()) // 60
    first = last - minutes + 1
    since = datetime.fromtimestamp(first * 60, now.tzinfo)
    with store.read() as session:
        submitted = sql.submitted_per_minute(session, since, tenant)
        finished = sql.finished_per_minute(session, since, tenant)
    return [
        Minute(datetime.fromtimestamp(m * 60, now.tzinfo), submitted.get(m, 0),
               finished.get((m, "succeeded"), 0), finished.get((m, "failed"), 0))
        for m in range(first, last + 1)
    ]


def outcomes(store: Store, tenant: str | None, window: timedelta = timedelta(hours=1)
             ) -> list[TypeOutcome]:
    """Per job type, how many finished jobs succeeded and failed in the window."""
    with store.read() as session:
        rows = sql.outcomes_by_type(session, utcnow() - window, tenant)
    return [TypeOutcome(*row) for row in rows]


def failed_groups(store: Store, tenant: str | None) -> list[FailedGroup]:
    """The dead-letter set, grouped by job type and error, over its newest FAILED_WINDOW jobs."""
    with store.read() as session:
        return sql.failed_groups(session, tenant, FAILED_WINDOW, FAILED_GROUPS_SHOWN)


def retry_failed_group(store: Store, jobs: JobService, tenant: str | None, type: str,
                       error_type: str, message: str) -> BulkResult:
    """Retry every failed job of one group (within the window the page shows)."""
    with store.read() as session:
        ids = sql.failed_group_ids(session, tenant, FAILED_WINDOW, type, error_type, message)
    if not ids:
        return BulkResult(matched=0, changed=0, skipped=0)
    return jobs.bulk("retry", JobFilter(ids=ids, tenant=tenant), limit=len(ids))
