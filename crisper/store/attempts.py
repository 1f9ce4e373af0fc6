"""The worker side of a job: claim, heartbeat, progress, logs, outcome (callers commit)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, NamedTuple

from psycopg.types.json import Jsonb
from sqlalchemy import (
    Boolean,
    String,
    Uuid,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    null,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from crisper.errors import InvalidTransition
from crisper.states import TERMINAL, JobState, move
from crisper.store import deliveries as outbox
from crisper.store import workflows as workflow_sql
from crisper.store.models import JSONB, UTCDateTime, job_logs, jobs, queues
from crisper.store.statements import (
    changed,
    dialect_of,
    moved_event,
    moving,
    never_sort,
    pg_params,
    pg_sql,
    run_moving,
    run_on_driver,
    state_in,
    with_queue_literal,
)
from crisper.store.sweeps import Dispatch

S = JobState
# The worker's moves, each checked against the table when this module is imported.
CLAIM = move(S.RUNNING, S.QUEUED)
OUTCOMES = {t: move(t, S.RUNNING) for t in (S.SUCCEEDED, S.FAILED, S.RETRYING, S.CANCELLED)}
RESCUE = move(S.QUEUED, S.RUNNING)  # handed back unspent: a lost worker, an interruption


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
    hard_timeout: float | None = None  # the job's own hard limit; None: its type's applies
    workflow_id: uuid.UUID | None = None  # a workflow node: its outcome releases its children
    # Whether its outcome may cause webhooks or batch counts (store/deliveries.py): if not,
    # the outcome is one autocommitted statement; if so, one transaction with its outbox rows.
    notifies: bool = True
    # Whether another job of its queue waited when it was claimed (None: not known).
    others_waiting: bool | None = None

    @property
    def spent(self) -> int:
        """Attempts that count against max_attempts: rescued ones were handed back unspent."""
        return self.attempt - self.returned_attempts


@cache
def _claim_statement(dialect: str, skip_paused: bool, by_type: bool = False,
                     by_queue: bool = False) -> Any:
    if dialect == "postgresql":
        wanted = jobs.c.id == func.any(bindparam("ids", type_=postgresql.ARRAY(Uuid())))
    else:
        wanted = jobs.c.id.in_(bindparam("ids", expanding=True))
    where = [wanted]
    if by_type:  # the message names a type: it must be the job's own (it picks the function)
        where.append(jobs.c.type == bindparam("want_type", type_=String()))
    if by_queue:
        where.append(jobs.c.queue == bindparam("want_queue", type_=String()))
    if skip_paused:
        paused = exists().where(queues.c.name == jobs.c.queue, queues.c.paused_at.is_not(None))
        where.append(~paused)
    return (
        moving(CLAIM, *where, keyed=True, **_claim_values())
        .returning(*_CLAIMED_COLUMNS, outbox.notifies(jobs).label("notifies"))
    )


def _claim_values(token: str = "token") -> dict[str, Any]:
    """What a claim writes: a new attempt, its lease (the parameter `token`), its worker and
    its start."""
    return {"attempt": jobs.c.attempt + 1, "lease_token": bindparam(token),
            "lease_expires_at": bindparam("expires"), "worker": bindparam("worker"),
            "task_id": bindparam("task_id"), "started_at": bindparam("at"),
            "cancel_requested_at": None, "interrupted_at": None,
            "forcible": bindparam("forcible", type_=Boolean())}


_CLAIMED_COLUMNS = (jobs.c.id, jobs.c.type, jobs.c.params, jobs.c.attempt, jobs.c.max_attempts,
                    jobs.c.retry_policy, jobs.c.timeout, jobs.c.returned_attempts,
                    jobs.c.workflow_id, jobs.c.hard_timeout)


def _claimed(rows: Sequence[Any], token: uuid.UUID) -> list[Claimed]:
    return [Claimed(r.id, r.type, r.params, r.attempt, r.max_attempts, r.retry_policy, r.timeout,
                    token, r.returned_attempts, r.hard_timeout, r.workflow_id, bool(r.notifies),
                    getattr(r, "others_waiting", None))
            for r in rows]


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
    dialect = dialect_of(db)
    params = {"ids": list(ids), "token": token, "worker": worker, "task_id": task_id, "at": at,
              "expires": at + timedelta(seconds=lease_seconds), "forcible": forcible}
    if job_type is not None:
        params["want_type"] = job_type
    if queue is not None:
        params["want_queue"] = queue
    statement = _claim_statement(dialect, skip_paused, job_type is not None, queue is not None)
    rows = run_moving(db, dialect, statement, params, CLAIM, "claimed", None)
    return _claimed(rows, token)


def _next_in_queue(dialect: str, lock: bool = True, limit: int = 1, table: Any = jobs) -> Any:
    """The best queued job of a queue among the given types: priority (0-255) first, then
    submission order (ids are time-ordered), skipping rows another claim holds locked.
    Jobs of a paused queue are not taken (the queue's resume makes the relay wake it again)."""
    if dialect == "postgresql":
        types = table.c.type == func.any(
            bindparam("want_types", type_=postgresql.ARRAY(String())))
    else:
        types = table.c.type.in_(bindparam("want_types", expanding=True))
    # Whether the queue is paused, asked once (of the queue named, not of each row's): as a
    # join per row, PostgreSQL's estimate of it, once the tables had statistics, left about one
    # row of a backlog, and the claim sorted the whole backlog instead of reading the
    # index's first entry (21 ms per claim with 50,000 jobs queued, instead of 0.5).
    paused = exists().where(queues.c.name == bindparam("want_queue"),
                            queues.c.paused_at.is_not(None))
    # 'queued' written into the SQL: a prepared statement's generic plan can then use the
    # partial index of queued jobs (see statements.pg_sql)
    queued = table.c.state == literal(S.QUEUED.value, literal_execute=True)
    best = (
        select(table.c.id, table.c.type)
        .where(queued, table.c.queue == bindparam("want_queue"),
               types, table.c.source != "observed", ~paused)
        .order_by(table.c.priority.desc(), table.c.id).limit(limit)
    )
    return best.with_for_update(skip_locked=True) if lock else best


@cache
def _claim_next_statement(dialect: str) -> Any:
    return _claiming_next(dialect)


def _claiming_next(dialect: str, *where: Any, token: str = "token", others: bool = True) -> Any:
    """The claim of the queue's best job (and `where`), answering what a worker needs;
    `others`: also whether another job waits (a wake-up's first claim asks, to wake one
    more slot; the claims after it do not, so they skip that index scan)."""
    best = _next_in_queue(dialect).with_only_columns(jobs.c.id).scalar_subquery()
    returned = [*_CLAIMED_COLUMNS, outbox.notifies(jobs).label("notifies")]
    if others and dialect == "postgresql":  # its snapshot still shows the claimed job queued
        two = _next_in_queue(dialect, lock=False, limit=2, table=jobs.alias("waiting"))
        returned.append((select(func.count()).select_from(two.subquery()).scalar_subquery()
                         > 1).label("others_waiting"))
    return (moving(CLAIM, jobs.c.id == best, *where, keyed=True, **_claim_values(token))
            .returning(*returned))


def claim_next(db: Session | Connection, queue: str, types: Sequence[str], worker: str,
               task_id: str, lease_seconds: float, at: datetime, *,
               forcible: bool | None = None) -> Claimed | None:
    """Claim the best queued job of `queue` among `types` (those the worker has registered),
    with its event, in one statement on PostgreSQL (FOR UPDATE SKIP LOCKED: concurrent
    claims take different jobs); None when nothing is left: a stale wake-up costs only this.
    SQLite has one writer at a time, so the subquery and the update cannot interleave."""
    token = uuid.uuid4()
    dialect = dialect_of(db)
    params = _next_claim_params(queue, types, token, worker, task_id, lease_seconds, at,
                                forcible)
    rows = run_moving(db, dialect, _claim_next_statement(dialect), params, CLAIM, "claimed",
                      None, queue_literal=True)
    found = _claimed(rows, token)
    return found[0] if found else None


def _next_claim_params(queue: str, types: Sequence[str], token: uuid.UUID, worker: str,
                       task_id: str, lease_seconds: float, at: datetime,
                       forcible: bool | None, token_name: str = "token") -> dict[str, Any]:
    """The parameters of `_claiming_next` (its lease token under `token_name`)."""
    return {"want_queue": queue, "want_types": list(types), token_name: token,
            "worker": worker, "task_id": task_id, "at": at,
            "expires": at + timedelta(seconds=lease_seconds), "forcible": forcible}


@cache
def _queued_type_statement(dialect: str) -> Any:
    return _next_in_queue(dialect, lock=False)


@cache
def _queued_type_pg() -> tuple[str, dict[str, Any]]:
    return pg_sql(_queued_type_statement("postgresql"))


def queued_type(db: Session | Connection, queue: str, types: Sequence[str]) -> str | None:
    """The type of the best job of `queue` among `types` waiting to be claimed, locked or not
    (no lock taken: a hint), or None if none waits. A slot asks it whenever a claim found
    nothing, so on PostgreSQL it is built once and run on the driver, like the claims."""
    params = {"want_queue": queue, "want_types": list(types)}
    dialect = dialect_of(db)
    if dialect == "postgresql" and isinstance(db, Connection):
        sql, constants = _queued_type_pg()
        rows = run_on_driver(db, with_queue_literal(sql, queue), pg_params(constants, params))
        row = rows[0] if rows else None
    else:
        row = db.execute(_queued_type_statement(dialect), params).first()
    return None if row is None else str(row.type)


def next_queued(session: Session, queue: str, types: Sequence[str]) -> tuple[uuid.UUID, str] | None:
    """The best queued job of `queue` among `types`, locked for the caller's transaction (a
    limited type's job then goes through the flow gate in that transaction)."""
    never_sort(session)  # the claim index's order, as for every claim
    row = session.execute(_next_in_queue(dialect_of(session)),
                          {"want_queue": queue, "want_types": list(types)}).first()
    return None if row is None else (row.id, row.type)


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
               state_in([S.RUNNING], keyed=True))
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
    values: dict[str, Any] = {"lease_token": None, "lease_expires_at": None,
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
    return _fenced_move(OUTCOMES[target], values)


def _fenced_move(running_to: Any, values: dict[str, Any]) -> Any:
    """A running job's move, made only by the holder of its lease token (the attempt's fence)."""
    return (
        moving(running_to, jobs.c.id == bindparam("job_id"),
               jobs.c.lease_token == bindparam("token"), keyed=True, **values)
        .returning(jobs.c.id, jobs.c.attempt, jobs.c.workflow_id)
    )


def finish(
    db: Session | Connection, job_id: uuid.UUID, token: uuid.UUID, target: JobState,
    at: datetime, *,
    reason: str, worker: str | None = None, result: Any = None,
    error: dict[str, Any] | None = None, retry_at: datetime | None = None,
    released: list[Dispatch] | None = None, notifies: bool = True,
) -> bool:
    """running -> target, fenced by the lease token: a worker that lost its lease writes nothing.

    A workflow node's end releases its children in the same transaction; those now queued are
    appended to `released` (their wake-ups are unsent: the caller or the relay sends them).
    `notifies=False` (known at the claim: no callback URL, no batch, no subscription in the
    tenant) skips the outbox and keeps the outcome one statement.
    """
    detail = _outcome_detail(job_id, target, error, retry_at)
    statement = _finish_statement(target)
    params = {"job_id": job_id, "token": token, "at": at, "worker": worker, "error": error}
    if target is S.SUCCEEDED:
        params["result"] = result
    if target is S.RETRYING:
        params["retry_at"] = retry_at
    with outbox.atomic(db) if notifies else nullcontext():
        moved = run_moving(db, dialect_of(db), statement, params, OUTCOMES[target], reason,
                           detail)
        if moved and notifies:  # webhooks and batch counters, in the outcome's own transaction
            outbox.job_moved(db, job_id, S.RUNNING, target, at, reason)
        if moved and moved[0].workflow_id is not None and target in TERMINAL:
            children = workflow_sql.release(db, job_id, target, at)
            if released is not None:
                released.extend(children)
    return bool(moved)


def _outcome_detail(job_id: uuid.UUID, target: JobState, error: dict[str, Any] | None,
                    retry_at: datetime | None) -> dict[str, Any] | None:
    """The detail of an outcome's event (its error message, its retry time), once the target
    is checked to be an end: running -> queued is a rescue (no attempt spent), not one."""
    if target not in OUTCOMES:
        raise InvalidTransition(job_id, S.RUNNING.value, f"finished as {target.value}", ["no"])
    detail = {"error": error["message"]} if error else None
    if retry_at is not None:
        detail = {**(detail or {}), "retry_at": retry_at.isoformat()}
    return detail


@cache
def _finish_then_claim_statement(target: JobState) -> tuple[str, dict[str, Any]]:
    """PostgreSQL: a job's outcome and, only if it was recorded, the claim of its queue's
    next best job, each with its event, in one statement: in a backlog a job then costs the
    worker one round trip and one commit after its body, not two. One row: `recorded` (0
    or 1), `waiting` (the statement's snapshot held queued jobs of the queue, locked or
    not: without any, the slot is done) and the claimed job's columns (NULL if none)."""
    finished = _finish_statement(target).cte("finished")
    claimed = _claiming_next("postgresql", exists(select(finished.c.id)),
                             token="next_token", others=False).cte("claimed")
    one = select(literal(1).label("one")).subquery("one")
    recorded = select(func.count()).select_from(finished).scalar_subquery()
    # Counted over the ordered subquery, not EXISTS (which drops the ORDER BY): so it reads
    # the claim's own index, where finished jobs' entries are soon marked dead and skipped.
    # Only looked for when nothing was claimed: PostgreSQL runs the subquery on first use.
    left = _next_in_queue("postgresql", lock=False, table=jobs.alias("left")).subquery()
    waiting = case((claimed.c.id.is_not(None), true()),
                   else_=select(func.count()).select_from(left).scalar_subquery() > 0)
    statement = (
        select(recorded.label("recorded"), waiting.label("waiting"), claimed)
        .select_from(one.outerjoin(claimed, literal(True)))
        .add_cte(moved_event(finished, OUTCOMES[target]).cte("finished_logged"))
        .add_cte(moved_event(claimed, CLAIM, reason=literal("claimed"),
                             detail=null()).cte("claimed_logged"))
    )
    return pg_sql(statement)


class FinishedThenClaimed(NamedTuple):
    recorded: bool  # the outcome was written (False: the lease had been lost)
    claimed: Claimed | None  # the queue's next job (None: none, or only locked ones)
    waiting: bool  # queued jobs of the queue were seen, locked or not (False: it is empty)


def finish_then_claim_next(
    conn: Connection, job_id: uuid.UUID, token: uuid.UUID, target: JobState, at: datetime, *,
    reason: str, worker: str, result: Any = None, error: dict[str, Any] | None = None,
    retry_at: datetime | None = None, queue: str, types: Sequence[str], task_id: str,
    lease_seconds: float, forcible: bool | None = None,
) -> FinishedThenClaimed:
    """`finish` (one that notifies nothing and releases no workflow children), then, in the
    same statement and only if the outcome was recorded, `claim_next` (PostgreSQL only)."""
    detail = _outcome_detail(job_id, target, error, retry_at)
    sql, constants = _finish_then_claim_statement(target)
    next_token = uuid.uuid4()
    params = pg_params(constants, {
        "job_id": job_id, "token": token, "error": error, "result": result,
        "retry_at": retry_at, "reason": reason, "detail": Jsonb(detail) if detail else None,
        **_next_claim_params(queue, types, next_token, worker, task_id, lease_seconds, at,
                             forcible, token_name="next_token")})
    row = run_on_driver(conn, with_queue_literal(sql, queue), params)[0]
    found = _claimed([row], next_token) if row.id is not None else []
    return FinishedThenClaimed(bool(row.recorded), found[0] if found else None,
                               bool(row.waiting))


@cache
def _rescue_statement(counted: bool) -> Any:
    values: dict[str, Any] = {
        "lease_token": None, "lease_expires_at": None,
        "queued_at": bindparam("at"), "dispatched_at": None, "interrupted_at": None,
        "returned_attempts": jobs.c.returned_attempts + 1,
    }
    if counted:
        values["rescues"] = jobs.c.rescues + 1
    return _fenced_move(RESCUE, values)


def rescue(db: Session | Connection, job_id: uuid.UUID, token: uuid.UUID, at: datetime, *,
           reason: str, counted: bool, worker: str | None = None,
           detail: dict[str, Any] | None = None) -> bool:
    """running -> queued, fenced by the lease token, handing the attempt back unspent.

    `counted` rescues (a worker lost without notice) add to the job's poison-pill count;
    announced ones (a shutdown's interruption, a worker cut off from the database) do not.
    """
    params = {"job_id": job_id, "token": token, "at": at, "worker": worker}
    return bool(run_moving(db, dialect_of(db), _rescue_statement(counted), params, RESCUE,
                           reason, detail))


def mark_interrupted(session: Session, worker_prefix: str, at: datetime, expires: datetime
                     ) -> int:
    """An announced shutdown: mark the running jobs of one worker node as interrupted, their
    leases cut to `expires` (a process still draining renews them, briefly, on its beat)."""
    return changed(session, update(jobs).where(
        jobs.c.state == S.RUNNING.value, jobs.c.worker.startswith(worker_prefix, autoescape=True),
        jobs.c.interrupted_at.is_(None)).values(interrupted_at=at, lease_expires_at=expires))
