"""The cron unit: fire due schedules. Every fire makes one job, however many schedulers run.

A scheduler claims a schedule's fires by moving its next_fire_at from the value it read
to the next one, in one conditional update; the others find it moved and do nothing.
The job is created in the same transaction, so a claimed fire cannot be lost either;
the unique index on (schedule_name, fire_time) backs this up.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, cast

from crisper import cron
from crisper.errors import CrisperError
from crisper.schedules import request_for
from crisper.service import JobService
from crisper.store import Store
from crisper.store import jobs as job_sql
from crisper.store import schedules as schedule_sql
from crisper.store.schedules import ScheduleRecord

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
BATCH = 100


def fire_due(store: Store, jobs: JobService, at: datetime) -> int:
    with store.read() as session:
        due = schedule_sql.due(session, at, BATCH)
    return sum(fire(store, jobs, s, at) for s in due)


def fire(store: Store, jobs: JobService, s: ScheduleRecord, at: datetime) -> int:
    """Run the fires of `s` due at `at`, if this scheduler wins them; the jobs made."""
    assert s.next_fire_at is not None
    catchup = cast(cron.Catchup, s.catchup)
    plan = cron.plan(s.cron, s.timezone, s.next_fire_at, at, catchup, s.catchup_window)
    with store.transaction() as session:
        if not schedule_sql.advance(session, s.name, s.tenant, s.next_fire_at,
                                    plan.next_fire_at, at):
            return 0  # another scheduler took these fires
        made, skipped, error = 0, plan.missed, None
        last_job: uuid.UUID | None = None
        for fire_time in plan.fires:
            if not _overlap_allows(session, s, at):
                skipped += 1
                continue
            run_at = cron.run_at(s.name, fire_time, s.jitter) if s.jitter else None
            try:
                job = jobs.submit_many([request_for(s, fire_time, run_at)], session=session)[0]
            except CrisperError as exc:  # e.g. the job type changed its parameters
                error = str(exc)
                log.error("schedule %s could not fire: %s", s.name, exc)
                break
            made, last_job = made + 1, job.id
        schedule_sql.record_fires(session, s.name, s.tenant, made, skipped,
                                  plan.fires[-1] if plan.fires else None,
                                  last_job, error)
    return made


def _overlap_allows(session: Session, s: ScheduleRecord, at: datetime) -> bool:
    """skip: no new job while one is active; cancel: stop the active ones, then fire."""
    if s.overlap == "allow":
        return True
    active = schedule_sql.active_jobs(session, s.name, s.tenant)
    if s.overlap == "skip":
        return not active
    for job in active:
        job_sql.cancel(session, job, at, reason="overlap_cancelled")
    return True
