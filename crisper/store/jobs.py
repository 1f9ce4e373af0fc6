"""Create, read and act on jobs (cancel, start, restart). Callers own the transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from crisper.errors import ConcurrentChange
from crisper.records import EventRecord, JobRecord, LogRecord
from crisper.states import INITIAL, JobState, Move, cancel_effect, check_action, transition
from crisper.store import deliveries as outbox
from crisper.store.models import job_events, job_logs, jobs
from crisper.store.statements import (
    RECORD_COLUMNS,
    changed,
    dialect_of,
    event,
    moving,
    pg_create_statement,
    pg_params,
    record_event,
    record_note,
    run_on_driver,
)
from crisper.store.stats import id_floor
from crisper.store.tags import HasMetadata, HasTag

S = JobState


# -- create ---------------------------------------------------------------------------------

def create(db: Session | Connection, rows: Sequence[dict[str, Any]], at: datetime) -> None:
    """Insert new jobs and their "submitted" events in the caller's transaction.

    PostgreSQL: one pre-built statement per job (the row and its event), sent as a pipeline.
    """
    check_initial(rows)
    if dialect_of(db) == "postgresql":
        sql, constants = pg_create_statement(tuple(sorted(rows[0])))
        conn = db.connection() if isinstance(db, Session) else db
        run_on_driver(conn, sql, [pg_params(constants, {**r, "at": at}) for r in rows],
                      many=True)
        return
    db.execute(insert(jobs), list(rows))
    db.execute(
        insert(job_events),
        [event(r["id"], None, S(r["state"]), "submitted", at, 0) for r in rows],
    )


def check_initial(rows: Sequence[dict[str, Any]]) -> None:
    """Every new job enters in a state a job may be created in (states.INITIAL)."""
    for state in {r["state"] for r in rows} - {s.value for s in INITIAL}:
        transition(None, S(state))


def find_idempotent(session: Session, tenant: str, key: str) -> JobRecord | None:
    row = session.execute(
        select(*RECORD_COLUMNS).where(jobs.c.tenant == tenant, jobs.c.idempotency_key == key)
    ).first()
    return JobRecord.from_row(row) if row else None


# -- read -----------------------------------------------------------------------------------

def get(session: Session, job_id: uuid.UUID, tenant: str | None = None,
        for_update: bool = False) -> JobRecord | None:
    stmt = select(*RECORD_COLUMNS).where(jobs.c.id == job_id)
    if tenant is not None:
        stmt = stmt.where(jobs.c.tenant == tenant)
    if for_update:
        stmt = stmt.with_for_update()
    row = session.execute(stmt).first()
    return JobRecord.from_row(row) if row else None


@dataclass(frozen=True)
class JobFilter:
    states: Sequence[JobState] = ()
    types: Sequence[str] = ()
    queues: Sequence[str] = ()
    tenant: str | None = None
    tag: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    finished_after: datetime | None = None
    finished_before: datetime | None = None
    ids: Sequence[uuid.UUID] = ()
    metadata: tuple[tuple[str, str], ...] = ()  # every pair must match exactly
    batch_id: uuid.UUID | None = None


def _where(stmt: Any, f: JobFilter) -> Any:
    if f.ids:
        stmt = stmt.where(jobs.c.id.in_(f.ids))
    if f.batch_id is not None:
        stmt = stmt.where(jobs.c.batch_id == f.batch_id)
    if f.states:
        stmt = stmt.where(jobs.c.state.in_([s.value for s in f.states]))
    if f.types:
        stmt = stmt.where(jobs.c.type.in_(f.types))
    if f.queues:
        stmt = stmt.where(jobs.c.queue.in_(f.queues))
    if f.tenant is not None:
        stmt = stmt.where(jobs.c.tenant == f.tenant)
    if f.created_after:
        # Ids are minted at creation (time first), so the id bound keeps this an index range.
        stmt = stmt.where(jobs.c.created_at >= f.created_after,
                          jobs.c.id >= id_floor(f.created_after))
    if f.created_before:
        stmt = stmt.where(jobs.c.created_at < f.created_before)
    if f.finished_after:
        stmt = stmt.where(jobs.c.finished_at >= f.finished_after)
    if f.finished_before:
        stmt = stmt.where(jobs.c.finished_at < f.finished_before)
    if f.tag:
        stmt = stmt.where(HasTag(jobs.c.tags, f.tag))
    if f.metadata:
        stmt = stmt.where(HasMetadata(jobs.c.metadata, dict(f.metadata)))
    return stmt


def list_jobs(session: Session, f: JobFilter, before: uuid.UUID | None = None,
              limit: int = 50, after: uuid.UUID | None = None) -> list[JobRecord]:
    """Newest first, keyset-paginated on the time-ordered id: a page costs the same at any depth.

    `before` gives the page older than that id; `after` the page newer than it (read upwards
    from the cursor, then turned around).
    """
    stmt = _where(select(*RECORD_COLUMNS), f)
    if after is not None:
        stmt = stmt.where(jobs.c.id > after).order_by(jobs.c.id.asc()).limit(limit)
        return [JobRecord.from_row(r) for r in reversed(session.execute(stmt).all())]
    if before is not None:
        stmt = stmt.where(jobs.c.id < before)
    stmt = stmt.order_by(jobs.c.id.desc()).limit(limit)
    return [JobRecord.from_row(r) for r in session.execute(stmt)]


def matching_ids(session: Session, f: JobFilter, limit: int) -> list[uuid.UUID]:
    stmt = _where(select(jobs.c.id), f).order_by(jobs.c.id).limit(limit)
    return list(session.scalars(stmt))


def events(session: Session, job_id: uuid.UUID) -> list[EventRecord]:
    stmt = select(job_events).where(job_events.c.job_id == job_id).order_by(job_events.c.id)
    return [EventRecord.from_row(r) for r in session.execute(stmt)]


def logs(session: Session, job_id: uuid.UUID, after: int = 0, limit: int = 1000) -> list[LogRecord]:
    stmt = (
        select(job_logs)
        .where(job_logs.c.job_id == job_id, job_logs.c.id > after)
        .order_by(job_logs.c.id)
        .limit(limit)
    )
    return [LogRecord.from_row(r) for r in session.execute(stmt)]


def count_matching(session: Session, f: JobFilter) -> dict[str, int]:
    """Jobs matching the filter, counted per state."""
    stmt = _where(select(jobs.c.state, func.count()), f).group_by(jobs.c.state)
    return {state: n for state, n in session.execute(stmt)}


def count_by_state(session: Session, tenant: str | None = None) -> dict[str, int]:
    stmt = select(jobs.c.state, func.count()).group_by(jobs.c.state)
    if tenant is not None:
        stmt = stmt.where(jobs.c.tenant == tenant)
    return {state: n for state, n in session.execute(stmt)}


# -- user actions ---------------------------------------------------------------------------

def cancel(session: Session, job: JobRecord, at: datetime, reason: str = "cancelled") -> JobState:
    """Cancel a waiting job now; ask a running one to stop. Returns the state the job is left in."""
    effect = cancel_effect(job.id, job.state, job.cancel_requested_at is not None)
    if effect == "note":  # a request: the job stays running until its worker stops it
        session.execute(
            update(jobs).where(jobs.c.id == job.id, jobs.c.state == S.RUNNING.value)
            .values(cancel_requested_at=at)
        )
        record_note(session, job.id, "cancel_requested", at, job.attempt)
    if effect != "move":
        return S.RUNNING
    _move(session, job, S.CANCELLED, at, reason, cancelled_at=at, finished_at=at)
    return S.CANCELLED


def start(session: Session, job: JobRecord, at: datetime) -> None:
    check_action(job.id, job.state, "started")
    _move(session, job, S.QUEUED, at, "started", queued_at=at, dispatched_at=None)


def restart(session: Session, job: JobRecord, at: datetime,
            params: dict[str, Any] | None = None) -> None:
    """A terminal job becomes queued again as a new series of attempts; with `params` (already
    validated) it runs with those instead (a replay with edit), the old ones kept in the
    "retried" event's detail."""
    check_action(job.id, job.state, "retried")
    edit: dict[str, Any] = {}
    detail = None
    if params is not None:
        edit["params"] = params
        detail = {"edit": {"before": job.params, "after": params}}
    _move(session, job, S.QUEUED, at, "retried", detail=detail, attempt=0, result=None,
          error=None, progress_current=None, progress_total=None, progress_message=None,
          finished_at=None, cancelled_at=None, cancel_requested_at=None, started_at=None,
          run_at=None, queued_at=at, dispatched_at=None, worker=None, task_id=None,
          returned_attempts=0, rescues=0, interrupted_at=None, **edit)


def _move(session: Session, job: JobRecord, target: JobState, at: datetime, reason: str,
          detail: dict[str, Any] | None = None, **values: Any) -> None:
    done = changed(session, moving(Move(frozenset({job.state}), target), jobs.c.id == job.id,
                                   keyed=True, **values))
    if not done:  # the row moved under us (no row lock on SQLite): re-read and re-check
        fresh = get(session, job.id)
        assert fresh is not None
        check_action(job.id, fresh.state, reason)
        raise ConcurrentChange(job.id)
    record_event(session, job.id, job.state, target, reason, at, job.attempt, detail=detail)
    outbox.job_moved(session, job.id, job.state, target, at, reason)  # webhooks, batches
