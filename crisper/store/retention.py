"""SQL for retention: delete finished jobs by type and state, or drop only their payload."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from crisper.states import JobState
from crisper.store.models import job_events, job_logs, jobs
from crisper.store.statements import changed


def prune(session: Session, state: JobState, finished_before: datetime, limit: int, *,
          types: Sequence[str] = (), other_than: Sequence[str] = ()) -> int:
    """Delete up to `limit` jobs in `state` finished before the time, with their history:
    of `types` if given, else of every type but `other_than`."""
    old = select(jobs.c.id).where(jobs.c.state == state.value,
                                  jobs.c.finished_at < finished_before)
    if types:
        old = old.where(jobs.c.type.in_(types))
    elif other_than:
        old = old.where(jobs.c.type.not_in(other_than))
    ids = list(session.scalars(old.limit(limit)))
    if not ids:
        return 0
    # Children first: not every database enforces ON DELETE CASCADE.
    session.execute(delete(job_logs).where(job_logs.c.job_id.in_(ids)))
    session.execute(delete(job_events).where(job_events.c.job_id.in_(ids)))
    return changed(session, delete(jobs).where(jobs.c.id.in_(ids)))


def drop_payloads(session: Session, type: str, finished_before: datetime, limit: int,
                  at: datetime) -> int:
    """Keep the record (state, times, error, events); drop params, result and log lines."""
    old = (select(jobs.c.id)
           .where(jobs.c.type == type, jobs.c.finished_at < finished_before,
                  jobs.c.payload_dropped_at.is_(None))
           .limit(limit))
    ids = list(session.scalars(old))
    if not ids:
        return 0
    session.execute(delete(job_logs).where(job_logs.c.job_id.in_(ids)))
    return changed(session, update(jobs).where(jobs.c.id.in_(ids))
                   .values(params={}, result=None, payload_dropped_at=at))
