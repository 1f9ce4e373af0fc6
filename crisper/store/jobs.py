"""Every SQL statement on jobs, named by the transition it makes. Callers own the transaction."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

from psycopg.types.json import Jsonb
from sqlalchemy import (
    JSON,
    Boolean,
    CursorResult,
    String,
    Uuid,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from crisper.errors import ConcurrentChange
from crisper.states import TERMINAL, JobState, check_action
from crisper.store.models import JSONB, UTCDateTime, job_events, job_logs, jobs, queues
from crisper.store.records import EventRecord, JobRecord, LogRecord
from crisper.store.stats import id_floor
from crisper.store.tags import HasMetadata, HasTag

S = JobState
_RECORD_COLUMNS = [jobs.c[name] for name in JobRecord.__dataclass_fields__]


@dataclass(frozen=True)
class Claimed:
    """A job a worker now holds: what it needs to run it and to fence its writes."""

    id: uuid.UUID
    type: str
    params: dict[str, Any]
    attempt: int
    max_attempts: int
    retry_policy: dict[str, Any]
    timeout: float | None
    lease_token: uuid.UUID
    returned_attempts: int = 0

    @property
    def spent(self) -> int:
        """Attempts that count against max_attempts: rescued ones were handed back unspent."""
        return self.attempt - self.returned_attempts


@dataclass(frozen=True)
class Lease:
    id: uuid.UUID
    token: uuid.UUID
    attempt: int
    max_attempts: int
    retry_policy: dict[str, Any]
    cancel_requested: bool
    worker: str | None
    task_id: str | None
    rescues: int = 0
    interrupted: bool = False
    forcible: bool | None = None


@dataclass(frozen=True)
class Dispatch:
    """A wake-up message to send: which job, of what type, on which queue."""

    id: uuid.UUID
    type: str
    queue: str
    priority: int
    dispatch_attempts: int = 0  # refused publishes in a row (the relay backs off on them)


def changed(session: Session, statement: Any) -> int:
    """How many rows an UPDATE or DELETE touched."""
    result = session.execute(statement)
    return int(cast(CursorResult[Any], result).rowcount)


def record_event(
    session: Session, job_id: uuid.UUID, source: JobState | None, target: JobState, reason: str,
    at: datetime, attempt: int, worker: str | None = None, detail: dict[str, Any] | None = None,
) -> None:
    session.execute(insert(job_events), [_event(job_id, source, target, reason, at, attempt,
                                                worker, detail)])


def _event(
    job_id: uuid.UUID, source: JobState | None, target: JobState, reason: str, at: datetime,
    attempt: int, worker: str | None = None, detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "job_id": job_id, "at": at, "from_state": source.value if source else None,
        "to_state": target.value, "reason": reason, "attempt": attempt, "worker": worker,
        "detail": detail,
    }


# -- create ---------------------------------------------------------------------------------

def create(db: Session | Connection, rows: Sequence[dict[str, Any]], at: datetime) -> None:
    """Insert new jobs and their "submitted" events in the caller's transaction.

    PostgreSQL: one pre-built statement per job (the row and its event), sent as a pipeline.
    """
    if _dialect(db) == "postgresql":
        sql, constants = _create_statement_pg(tuple(sorted(rows[0])))
        conn = db.connection() if isinstance(db, Session) else db
        conn.exec_driver_sql(sql, [_pg_params(constants, {**r, "at": at}) for r in rows])
        return
    db.execute(insert(jobs), list(rows))
    db.execute(
        insert(job_events),
        [_event(r["id"], None, S(r["state"]), "submitted", at, 0) for r in rows],
    )


_JSON_COLUMNS = frozenset(c.name for c in jobs.c if isinstance(c.type, JSON))


def _pg_params(constants: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Driver parameters for a pre-built statement: its constants, then the values, with
    those bound for JSON columns wrapped as psycopg wants them."""
    return {**constants, **{k: Jsonb(v) if k in _JSON_COLUMNS and v is not None else v
                            for k, v in values.items()}}


@cache
def _create_statement_pg(columns: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    created = (
        insert(jobs).values({c: bindparam(c, type_=jobs.c[c].type) for c in columns})
        .returning(jobs.c.id, jobs.c.state).cte("created")
    )
    logged = insert(job_events).from_select(_EVENT_COLUMNS, select(
        created.c.id, bindparam("at", type_=UTCDateTime()), null(), created.c.state,
        literal_column("'submitted'"), literal_column("0"), null(), null(),
    ))
    return _pg_sql(select(created.c.id).add_cte(logged.cte("logged")))


def find_idempotent(session: Session, tenant: str, key: str) -> JobRecord | None:
    row = session.execute(
        select(*_RECORD_COLUMNS).where(jobs.c.tenant == tenant, jobs.c.idempotency_key == key)
    ).first()
    return JobRecord.from_row(row) if row else None


def mark_dispatched(session: Session, ids: Sequence[uuid.UUID], at: datetime | None) -> None:
    """Record that wake-up messages went out (at) or must go out again (None).

    A message that went out clears the job's dispatch error and its back-off.
    """
    values: dict[str, Any] = {"dispatched_at": at}
    if at is not None:
        values.update(dispatch_error=None, dispatch_attempts=0, dispatch_after=None)
    session.execute(
        update(jobs)
        .where(jobs.c.id.in_(ids), jobs.c.state == S.QUEUED.value)
        .values(**values)
    )


def mark_dispatch_refused(session: Session, ids: Sequence[uuid.UUID], error: str,
                          retry_at: datetime) -> None:
    """The broker refused these jobs' message: they wait, showing why, until `retry_at`."""
    session.execute(
        update(jobs)
        .where(jobs.c.id.in_(ids), jobs.c.state == S.QUEUED.value)
        .values(dispatched_at=None, dispatch_error=error[:2000], dispatch_after=retry_at,
                dispatch_attempts=jobs.c.dispatch_attempts + 1)
    )


# -- read -----------------------------------------------------------------------------------

def get(session: Session, job_id: uuid.UUID, tenant: str | None = None,
        for_update: bool = False) -> JobRecord | None:
    stmt = select(*_RECORD_COLUMNS).where(jobs.c.id == job_id)
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


def _where(stmt: Any, f: JobFilter) -> Any:
    if f.ids:
        stmt = stmt.where(jobs.c.id.in_(f.ids))
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
    stmt = _where(select(*_RECORD_COLUMNS), f)
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


# -- worker side: claim, heartbeat, progress, logs, outcome ----------------------------------

def _dialect(db: Session | Connection) -> str:
    return (db.get_bind() if isinstance(db, Session) else db).dialect.name


def _pg_sql(statement: Any) -> tuple[str, dict[str, Any]]:
    """A Core statement compiled once for psycopg, with its constant parameters.

    Building and cache-keying Core statements costs more CPU per job than the database work
    itself, so the two statements every job runs are built once, from the same definitions
    the portable path uses, and run with exec_driver_sql.
    """
    compiled = statement.compile(dialect=_PG_DIALECT)
    return str(compiled), dict(compiled.params)


_PG_DIALECT = postgresql.psycopg.dialect()
_EVENT_COLUMNS = ["job_id", "at", "from_state", "to_state", "reason", "attempt", "worker",
                  "detail"]


def _with_event(moving: Any, source: JobState, target: JobState) -> Any:
    """PostgreSQL: the UPDATE … RETURNING and its event INSERT as one data-modifying CTE."""
    moved = moving.cte("moved")
    logged = insert(job_events).from_select(_EVENT_COLUMNS, select(
        moved.c.id, bindparam("at", type_=UTCDateTime()), literal_column(f"'{source.value}'"),
        literal_column(f"'{target.value}'"), bindparam("reason", type_=String()),
        moved.c.attempt, bindparam("worker", type_=String()), bindparam("detail", type_=JSONB),
    ))
    return select(moved).add_cte(logged.cte("logged"))


def _run_moving(db: Session | Connection, dialect: str, moving: Any, params: dict[str, Any],
                source: JobState, target: JobState, reason: str, detail: dict[str, Any] | None
                ) -> list[Any]:
    """Run a conditional UPDATE … RETURNING (id, attempt, …) and log one event per moved row.

    PostgreSQL: one statement, one round trip under autocommit. Elsewhere: two statements.
    """
    if dialect == "postgresql":
        compiled = _PG_STATEMENTS.get(moving)
        if compiled is None:
            compiled = _PG_STATEMENTS[moving] = _pg_sql(_with_event(moving, source, target))
        sql, constants = compiled
        pg_params = _pg_params(constants, params)
        pg_params.update(reason=reason, detail=Jsonb(detail) if detail else None)
        conn = db.connection() if isinstance(db, Session) else db
        return list(conn.exec_driver_sql(sql, pg_params))
    rows = list(db.execute(moving, params))
    if rows:
        db.execute(insert(job_events), [
            _event(r.id, source, target, reason, params["at"], r.attempt, params["worker"], detail)
            for r in rows
        ])
    return rows


_PG_STATEMENTS: dict[Any, tuple[str, dict[str, Any]]] = {}


@cache
def _claim_statement(dialect: str, skip_paused: bool, by_type: bool = False,
                     by_queue: bool = False) -> Any:
    if dialect == "postgresql":
        wanted = jobs.c.id == func.any(bindparam("ids", type_=postgresql.ARRAY(Uuid())))
    else:
        wanted = jobs.c.id.in_(bindparam("ids", expanding=True))
    where = [wanted, jobs.c.state == S.QUEUED.value]
    if by_type:  # the message names a type: it must be the job's own (it picks the function)
        where.append(jobs.c.type == bindparam("want_type", type_=String()))
    if by_queue:
        where.append(jobs.c.queue == bindparam("want_queue", type_=String()))
    if skip_paused:
        paused = exists().where(queues.c.name == jobs.c.queue, queues.c.paused_at.is_not(None))
        where.append(~paused)
    return (
        update(jobs).where(*where)
        .values(
            state=S.RUNNING.value, attempt=jobs.c.attempt + 1, lease_token=bindparam("token"),
            lease_expires_at=bindparam("expires"), worker=bindparam("worker"),
            task_id=bindparam("task_id"), started_at=bindparam("at"), cancel_requested_at=None,
            interrupted_at=None, forcible=bindparam("forcible", type_=Boolean()),
        )
        .returning(jobs.c.id, jobs.c.type, jobs.c.params, jobs.c.attempt, jobs.c.max_attempts,
                   jobs.c.retry_policy, jobs.c.timeout, jobs.c.returned_attempts)
    )


def claim(db: Session | Connection, ids: Sequence[uuid.UUID], worker: str, task_id: str,
          lease_seconds: float, at: datetime, skip_paused: bool = False, *,
          job_type: str | None = None, queue: str | None = None,
          forcible: bool | None = None) -> list[Claimed]:
    """queued -> running in one conditional update; a stale or duplicate message claims nothing.

    With `skip_paused`, jobs of a paused queue are left queued (the caller decides their fate).
    With `job_type` (and `queue`), only jobs of that type (on that queue) are claimed: a message
    naming another type than the job's must not decide which function runs. `forcible` records
    whether the claiming worker can stop the attempt by force (prefork) or not.
    """
    token = uuid.uuid4()
    dialect = _dialect(db)
    params = {"ids": list(ids), "token": token, "worker": worker, "task_id": task_id, "at": at,
              "expires": at + timedelta(seconds=lease_seconds), "forcible": forcible}
    if job_type is not None:
        params["want_type"] = job_type
    if queue is not None:
        params["want_queue"] = queue
    statement = _claim_statement(dialect, skip_paused, job_type is not None, queue is not None)
    rows = _run_moving(db, dialect, statement, params, S.QUEUED, S.RUNNING, "claimed", None)
    return [Claimed(r.id, r.type, r.params, r.attempt, r.max_attempts, r.retry_policy, r.timeout,
                    token, r.returned_attempts) for r in rows]


@dataclass(frozen=True)
class Unclaimable:
    """Why a message's job could not be claimed: what the store holds for it."""

    id: uuid.UUID
    state: str
    type: str
    queue: str


def unclaimable(session: Session, ids: Sequence[uuid.UUID]) -> list[Unclaimable]:
    """The stored state, type and queue of jobs a claim did not take (for one log line each)."""
    stmt = select(jobs.c.id, jobs.c.state, jobs.c.type, jobs.c.queue).where(
        jobs.c.id.in_(list(ids)))
    return [Unclaimable(r.id, r.state, r.type, r.queue) for r in session.execute(stmt)]


def renew_leases(session: Session, leases: dict[uuid.UUID, uuid.UUID], until: datetime,
                 interrupted_until: datetime | None = None) -> dict[uuid.UUID, bool]:
    """Extend the leases still held; answer {job id: cancel requested} for each one renewed.

    A job missing from the answer has lost its lease (rescued, or finished elsewhere). Jobs
    marked interrupted (their worker is shutting down) get only `interrupted_until`: once the
    shutdown kills them, the lifeline rescues them within a few beats, not a whole lease.
    """
    if not leases:
        return {}
    expires: Any = bindparam("until", until, type_=UTCDateTime())
    if interrupted_until is not None:
        expires = case((jobs.c.interrupted_at.is_not(None),
                        bindparam("short", interrupted_until, type_=UTCDateTime())),
                       else_=expires)
    rows = session.execute(
        update(jobs)
        .where(jobs.c.id.in_(list(leases)), jobs.c.lease_token.in_(list(leases.values())),
               jobs.c.state == S.RUNNING.value)
        .values(lease_expires_at=expires)
        .returning(jobs.c.id, jobs.c.cancel_requested_at)
    ).all()
    return {r.id: r.cancel_requested_at is not None for r in rows}


def save_progress(session: Session, job_id: uuid.UUID, token: uuid.UUID, current: float,
                  total: float | None, message: str | None) -> None:
    session.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.lease_token == token)
        .values(progress_current=current, progress_total=total, progress_message=message)
    )


def append_logs(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(job_logs), list(rows))


@cache
def _finish_statement(target: JobState) -> Any:
    values: dict[str, Any] = {"state": target.value, "lease_token": None, "lease_expires_at": None,
                              "error": func.coalesce(bindparam("error", type_=JSONB), jobs.c.error)}
    if target in TERMINAL:
        values["finished_at"] = bindparam("at")
    if target is S.SUCCEEDED:
        values["result"] = bindparam("result", type_=JSONB)
        values["error"] = None
    if target is S.RETRYING:
        values["run_at"] = bindparam("retry_at")
    if target is S.CANCELLED:
        values["cancelled_at"] = bindparam("at")
    return _fenced_move(values)


def _fenced_move(values: dict[str, Any]) -> Any:
    """A running job's move, made only by the holder of its lease token (the attempt's fence)."""
    return (
        update(jobs)
        .where(jobs.c.id == bindparam("job_id"), jobs.c.lease_token == bindparam("token"),
               jobs.c.state == S.RUNNING.value)
        .values(**values)
        .returning(jobs.c.id, jobs.c.attempt)
    )


def finish(
    db: Session | Connection, job_id: uuid.UUID, token: uuid.UUID, target: JobState,
    at: datetime, *,
    reason: str, worker: str | None = None, result: Any = None,
    error: dict[str, Any] | None = None, retry_at: datetime | None = None,
) -> bool:
    """running -> target, fenced by the lease token: a worker that lost its lease writes nothing."""
    detail = {"error": error["message"]} if error else None
    if retry_at is not None:
        detail = {**(detail or {}), "retry_at": retry_at.isoformat()}
    statement = _finish_statement(target)
    params = {"job_id": job_id, "token": token, "at": at, "worker": worker, "error": error}
    if target is S.SUCCEEDED:
        params["result"] = result
    if target is S.RETRYING:
        params["retry_at"] = retry_at
    return bool(_run_moving(db, _dialect(db), statement, params, S.RUNNING, target, reason,
                            detail))


@cache
def _rescue_statement(counted: bool) -> Any:
    values: dict[str, Any] = {
        "state": S.QUEUED.value, "lease_token": None, "lease_expires_at": None,
        "queued_at": bindparam("at"), "dispatched_at": None, "interrupted_at": None,
        "returned_attempts": jobs.c.returned_attempts + 1,
    }
    if counted:
        values["rescues"] = jobs.c.rescues + 1
    return _fenced_move(values)


def rescue(db: Session | Connection, job_id: uuid.UUID, token: uuid.UUID, at: datetime, *,
           reason: str, counted: bool, worker: str | None = None,
           detail: dict[str, Any] | None = None) -> bool:
    """running -> queued, fenced by the lease token, handing the attempt back unspent.

    `counted` rescues (a worker lost without notice) add to the job's poison-pill count;
    announced ones (a shutdown's interruption, a worker cut off from the database) do not.
    """
    params = {"job_id": job_id, "token": token, "at": at, "worker": worker}
    return bool(_run_moving(db, _dialect(db), _rescue_statement(counted), params, S.RUNNING,
                            S.QUEUED, reason, detail))


def mark_interrupted(session: Session, worker_prefix: str, at: datetime, expires: datetime
                     ) -> int:
    """An announced shutdown: mark the running jobs of one worker node as interrupted, their
    leases cut to `expires` (a process still draining renews them, briefly, on its beat)."""
    return changed(session, update(jobs).where(
        jobs.c.state == S.RUNNING.value, jobs.c.worker.startswith(worker_prefix, autoescape=True),
        jobs.c.interrupted_at.is_(None)).values(interrupted_at=at, lease_expires_at=expires))


# -- user actions ---------------------------------------------------------------------------

def cancel(session: Session, job: JobRecord, at: datetime, reason: str = "cancelled") -> JobState:
    """Cancel a waiting job now; ask a running one to stop. Returns the state the job is left in."""
    check_action(job.id, job.state, "cancelled")
    if job.state is S.RUNNING:
        if job.cancel_requested_at is None:
            session.execute(
                update(jobs).where(jobs.c.id == job.id, jobs.c.state == S.RUNNING.value)
                .values(cancel_requested_at=at)
            )
            record_event(session, job.id, S.RUNNING, S.RUNNING, "cancel_requested", at,
                         job.attempt)
        return S.RUNNING
    _move(session, job, S.CANCELLED, at, reason, cancelled_at=at, finished_at=at)
    return S.CANCELLED


def start(session: Session, job: JobRecord, at: datetime) -> None:
    check_action(job.id, job.state, "started")
    _move(session, job, S.QUEUED, at, "started", queued_at=at, dispatched_at=None)


def restart(session: Session, job: JobRecord, at: datetime) -> None:
    """A terminal job becomes queued again as a new series of attempts."""
    check_action(job.id, job.state, "retried")
    _move(session, job, S.QUEUED, at, "retried", attempt=0, result=None, error=None,
          progress_current=None, progress_total=None, progress_message=None, finished_at=None,
          cancelled_at=None, cancel_requested_at=None, started_at=None, run_at=None,
          queued_at=at, dispatched_at=None, worker=None, task_id=None, returned_attempts=0,
          rescues=0, interrupted_at=None)


def _move(session: Session, job: JobRecord, target: JobState, at: datetime, reason: str,
          **values: Any) -> None:
    done = changed(
        session,
        update(jobs).where(jobs.c.id == job.id, jobs.c.state == job.state.value)
        .values(state=target.value, **values),
    )
    if not done:  # the row moved under us (no row lock on SQLite): re-read and re-check
        fresh = get(session, job.id)
        assert fresh is not None
        check_action(job.id, fresh.state, reason)
        raise ConcurrentChange(job.id)
    record_event(session, job.id, job.state, target, reason, at, job.attempt)


# -- maintenance ----------------------------------------------------------------------------

def promote_due(session: Session, at: datetime, limit: int) -> int:
    """scheduled/retrying jobs whose time has come -> queued (their wake-up goes out next)."""
    moved = 0
    for source in (S.SCHEDULED, S.RETRYING):
        due = (
            select(jobs.c.id).where(jobs.c.state == source.value, jobs.c.run_at <= at)
            .order_by(jobs.c.run_at).limit(limit).with_for_update(skip_locked=True)
        )
        rows = session.execute(
            update(jobs).where(jobs.c.id.in_(due.scalar_subquery()), jobs.c.state == source.value)
            .values(state=S.QUEUED.value, queued_at=at, dispatched_at=None)
            .returning(jobs.c.id, jobs.c.attempt)
        ).all()
        if rows:
            reason = "due" if source is S.SCHEDULED else "retry_due"
            session.execute(insert(job_events), [
                _event(r.id, source, S.QUEUED, reason, at, r.attempt) for r in rows
            ])
        moved += len(rows)
    return moved


def undispatched(session: Session, limit: int, skip_queues: Collection[str] = (),
                 at: datetime | None = None) -> list[Dispatch]:
    """Queued jobs whose wake-up message has not gone out, locked against other relays.

    Jobs of `skip_queues` (the paused ones) wait until their queue is resumed; jobs whose
    message the broker refused wait out their back-off (until `dispatch_after`, if `at`).
    """
    stmt = (
        select(*_DISPATCH_COLUMNS)
        .where(jobs.c.state == S.QUEUED.value, jobs.c.dispatched_at.is_(None),
               jobs.c.queue.not_in(list(skip_queues)))
        .order_by(jobs.c.priority.desc(), jobs.c.id).limit(limit)
        .with_for_update(skip_locked=True)
    )
    if at is not None:
        stmt = stmt.where(or_(jobs.c.dispatch_after.is_(None), jobs.c.dispatch_after <= at))
    return [_dispatch(r) for r in session.execute(stmt)]


def waiting_dispatches(session: Session, ids: Sequence[uuid.UUID]) -> list[Dispatch]:
    """The wake-up messages for those of `ids` still queued (a batch's waiting jobs)."""
    stmt = (
        select(jobs.c.id, jobs.c.type, jobs.c.queue, jobs.c.priority)
        .where(jobs.c.id.in_(list(ids)), jobs.c.state == S.QUEUED.value)
        .order_by(jobs.c.id)
    )
    return [Dispatch(r.id, r.type, r.queue, r.priority) for r in session.execute(stmt)]


def queues_with_stale_dispatch(session: Session, before: datetime) -> list[str]:
    stmt = (
        select(jobs.c.queue).distinct()
        .where(jobs.c.state == S.QUEUED.value, jobs.c.dispatched_at < before)
    )
    return list(session.scalars(stmt))


def stale_dispatched(session: Session, queue: str, before: datetime, limit: int) -> list[Dispatch]:
    """Queued jobs told to a worker long ago and still unclaimed: their message may be lost."""
    stmt = (
        select(*_DISPATCH_COLUMNS)
        .where(jobs.c.state == S.QUEUED.value, jobs.c.queue == queue,
               jobs.c.dispatched_at < before)
        .order_by(jobs.c.priority.desc(), jobs.c.id).limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [_dispatch(r) for r in session.execute(stmt)]


def dispatched_before(session: Session, before: datetime, limit: int) -> list[Dispatch]:
    """Queued jobs whose message went out before `before` (a broker that restarted empty lost
    them), highest priority and oldest first, locked against other relays."""
    stmt = (
        select(*_DISPATCH_COLUMNS)
        .where(jobs.c.state == S.QUEUED.value, jobs.c.dispatched_at < before)
        .order_by(jobs.c.priority.desc(), jobs.c.id).limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [_dispatch(r) for r in session.execute(stmt)]


_DISPATCH_COLUMNS = (jobs.c.id, jobs.c.type, jobs.c.queue, jobs.c.priority,
                     jobs.c.dispatch_attempts)


def _dispatch(row: Any) -> Dispatch:
    return Dispatch(row.id, row.type, row.queue, row.priority, row.dispatch_attempts)


def _leases(session: Session, *conditions: Any, limit: int) -> list[Lease]:
    stmt = (
        select(jobs.c.id, jobs.c.lease_token, jobs.c.attempt, jobs.c.max_attempts,
               jobs.c.retry_policy, jobs.c.cancel_requested_at, jobs.c.worker, jobs.c.task_id,
               jobs.c.rescues, jobs.c.interrupted_at, jobs.c.forcible)
        .where(jobs.c.state == S.RUNNING.value, *conditions)
        .limit(limit).with_for_update(skip_locked=True)
    )
    return [
        Lease(r.id, r.lease_token, r.attempt, r.max_attempts, r.retry_policy,
              r.cancel_requested_at is not None, r.worker, r.task_id, r.rescues,
              r.interrupted_at is not None, r.forcible)
        for r in session.execute(stmt)
    ]


def expired_leases(session: Session, at: datetime, limit: int) -> list[Lease]:
    return _leases(session, jobs.c.lease_expires_at < at, limit=limit)


def overdue_cancels(session: Session, requested_before: datetime, limit: int, *,
                    types: Sequence[str] = (), other_than: Sequence[str] = ()) -> list[Lease]:
    """Running jobs asked to cancel before `requested_before`, which a forced stop can reach
    (a job whose worker cannot be forced is left to stop cooperatively): of `types`, or of
    every type but `other_than` (job types with their own cancel grace)."""
    by_type = (jobs.c.type.in_(types) if types else
               jobs.c.type.not_in(other_than) if other_than else true())
    return _leases(session, jobs.c.cancel_requested_at < requested_before,
                   jobs.c.forcible.is_not(False), by_type, limit=limit)


def unforcible_cancels(session: Session, requested_before: datetime, limit: int) -> list[Lease]:
    """Overdue cancel requests on workers that cannot stop a job by force, not yet explained."""
    explained = exists().where(job_events.c.job_id == jobs.c.id,
                               job_events.c.reason == "cancel_not_forcible",
                               job_events.c.attempt == jobs.c.attempt)
    return _leases(session, jobs.c.cancel_requested_at < requested_before,
                   jobs.c.forcible.is_(False), ~explained, limit=limit)


def ids_of(rows: Iterable[Dispatch]) -> list[uuid.UUID]:
    return [r.id for r in rows]
