"""SQL for retention: delete finished jobs by type and state, or drop only their payload; and
delete the rows of finished workflows whose jobs are all gone."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from crisper.states import JobState
from crisper.store.models import job_events, job_logs, jobs, workflow_edges, workflows
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
    session.execute(delete(workflow_edges).where(or_(workflow_edges.c.parent_id.in_(ids),
                                                     workflow_edges.c.child_id.in_(ids))))
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


def prune_workflows(session: Session, limit: int) -> int:
    """Delete up to `limit` workflows that have ended (noted, so `workflow.finished` was
    written) and have no job left, with any edge left of them."""
    job_left = select(jobs.c.id).where(jobs.c.workflow_id == workflows.c.id).exists()
    ids = list(session.scalars(select(workflows.c.id)
                               .where(workflows.c.finished_at.is_not(None), ~job_left)
                               .limit(limit)))
    if not ids:
        return 0
    session.execute(delete(workflow_edges).where(workflow_edges.c.workflow_id.in_(ids)))
    return changed(session, delete(workflows).where(workflows.c.id.in_(ids)))
