"""Maintenance on jobs: dispatch bookkeeping, promotion of due jobs, lease and cancel sweeps."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, insert, literal, or_, select, true, tuple_, update
from sqlalchemy.orm import Session

from crisper.states import JobState, move
from crisper.store.models import job_events, jobs
from crisper.store.statements import event, moving, never_sort, state_in

S = JobState
# Timers: a scheduled job's time has come; a retrying job's back-off is over.
DUE = {"due": move(S.QUEUED, S.SCHEDULED), "retry_due": move(S.QUEUED, S.RETRYING)}


def _fixed(value: str) -> Any:
    """A constant written into the SQL, not sent as a parameter. psycopg prepares what the
    maintenance loop runs every tick, and PostgreSQL's generic plan for `state = $1` cannot
    use an index whose predicate is `state = 'queued'` (statements.pg_sql)."""
    return literal(value, literal_execute=True)


# Observed Celery tasks are recorded, never dispatched, promoted, rescued or force-stopped.
OWN = jobs.c.source != _fixed("observed")
QUEUED = jobs.c.state == _fixed(S.QUEUED.value)
# Queued jobs with no wake-up out yet: the predicate of ix_crisper_jobs_unsent.
UNSENT = (QUEUED, jobs.c.dispatched_at.is_(None), OWN)


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
    # The job's own (hard, soft) time limits, sent in its message; None: its type's apply.
    limits: tuple[float, float | None] | None = None


def own_limits_of(row: Any) -> tuple[float, float | None] | None:
    """(hard, soft) from a job row or record that has its own time limits, else None."""
    return None if row.hard_timeout is None else (row.hard_timeout, row.timeout)


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


def promote_due(session: Session, at: datetime, limit: int) -> int:
    """scheduled/retrying jobs whose time has come -> queued (their wake-up goes out next)."""
    moved = 0
    for reason, timer in DUE.items():
        due = (
            select(jobs.c.id).where(state_in(timer.sources), jobs.c.run_at <= at, OWN)
            .order_by(jobs.c.run_at).limit(limit).with_for_update(skip_locked=True)
        )
        rows = session.execute(
            moving(timer, jobs.c.id.in_(due.scalar_subquery()), queued_at=at,
                   dispatched_at=None)
            .returning(jobs.c.id, jobs.c.attempt)
        ).all()
        if rows:
            session.execute(insert(job_events), [
                event(r.id, timer.source, timer.target, reason, at, r.attempt) for r in rows
            ])
        moved += len(rows)
    return moved


def next_due(session: Session) -> datetime | None:
    """When the first scheduled or retrying job comes due (None: none waits); the timers
    sleep until then rather than a whole tick."""
    due = state_in({source for timer in DUE.values() for source in timer.sources})
    first: datetime | None = session.scalar(select(func.min(jobs.c.run_at)).where(due, OWN))
    return first


def undispatched(session: Session, limit: int, skip_queues: Collection[str] = (),
                 at: datetime | None = None) -> list[Dispatch]:
    """About `limit` queued jobs whose wake-up message has not gone out, locked against other
    relays: each queue's share of them (so that no queue waits behind another's long
    backlog), read in its index's order, the claim's (sorted, 300,000 unsent jobs took
    150-220 ms a batch). All of them come highest priority first, then oldest.

    Jobs of `skip_queues` (the paused ones) wait until their queue is resumed; jobs whose
    message the broker refused wait out their back-off (until `dispatch_after`, if `at`).
    """
    never_sort(session)  # else the index of sending times, NULLs and all, and a sort
    walk = _queues_of(*UNSENT)
    queues = [q for q in session.scalars(select(walk.c.queue).where(walk.c.queue.is_not(None)))
              if q not in skip_queues]
    share = -(-limit // max(len(queues), 1))
    due = () if at is None else (or_(jobs.c.dispatch_after.is_(None),
                                     jobs.c.dispatch_after <= at),)
    todo: list[Dispatch] = []
    for queue in queues:
        stmt = (
            select(*_DISPATCH_COLUMNS).where(*UNSENT, jobs.c.queue == queue, *due)
            .order_by(jobs.c.priority.desc(), jobs.c.id).limit(share)
            .with_for_update(skip_locked=True)
        )
        todo.extend(_dispatch(r) for r in session.execute(stmt))
    return sorted(todo, key=lambda d: (-d.priority, d.id))


def waiting_dispatches(session: Session, ids: Sequence[uuid.UUID]) -> list[Dispatch]:
    """The wake-up messages for those of `ids` still queued (a batch's waiting jobs)."""
    stmt = (
        select(*_DISPATCH_COLUMNS)
        .where(jobs.c.id.in_(list(ids)), jobs.c.state == S.QUEUED.value)
        .order_by(jobs.c.id)
    )
    return [_dispatch(r) for r in session.execute(stmt)]


def queues_with_stale_dispatch(session: Session, before: datetime) -> list[str]:
    """Queues holding a queued job whose wake-up went out before `before`: of each queue
    with queued jobs (a skip scan), its oldest message, so the cost follows the number of
    queues, not of queued jobs (reading them all took 127 ms with 300,000 queued, and the
    relay asks every 2 s)."""
    walk = _queues_of(QUEUED, OWN)
    # a subquery per queue, its first row only: as EXISTS, PostgreSQL made it a join that
    # read every stale job
    stale = (select(jobs.c.id).where(QUEUED, OWN, jobs.c.queue == walk.c.queue,
                                     _sent_before(walk.c.queue, before))
             .limit(1).scalar_subquery().is_not(None))
    never_sort(session)
    return list(session.scalars(select(walk.c.queue).where(walk.c.queue.is_not(None), stale)))


def _queues_of(*where: Any) -> Any:
    """The distinct queues of the jobs meeting `where` (a recursive CTE, one row per queue
    and a last NULL): a skip scan, the next queue after each one by a single index descent,
    so the cost follows the number of queues, not of jobs."""
    def first_after(queue: Any = None) -> Any:
        later = () if queue is None else (jobs.c.queue > queue,)
        return (select(jobs.c.queue).where(*where, *later)
                .order_by(jobs.c.queue).limit(1).scalar_subquery())

    walk = select(first_after().label("queue")).cte("walk", recursive=True)
    return walk.union_all(select(first_after(walk.c.queue)).where(walk.c.queue.is_not(None)))


def stale_dispatched(session: Session, queue: str, before: datetime, limit: int) -> list[Dispatch]:
    """Queued jobs told to a worker long ago and still unclaimed: their message may be lost.
    Oldest message first, the dispatch index's order: a wake-up names no job, so the order
    only says which rows are marked sent again, and a sort by priority read every one of a
    long backlog's stale rows (220 ms with 300,000 queued)."""
    stmt = (
        select(*_DISPATCH_COLUMNS)
        .where(QUEUED, jobs.c.queue == queue, _sent_before(queue, before), OWN)
        .order_by(jobs.c.dispatched_at).limit(limit)
        .with_for_update(skip_locked=True)
    )
    never_sort(session)
    return [_dispatch(r) for r in session.execute(stmt)]


def dispatched_before(session: Session, before: datetime, limit: int) -> list[Dispatch]:
    """Queued jobs whose message went out before `before` (a broker that restarted empty lost
    them), oldest message first (as `stale_dispatched`), locked against other relays."""
    stmt = (
        select(*_DISPATCH_COLUMNS)
        .where(QUEUED, jobs.c.dispatched_at < before, OWN)
        .order_by(jobs.c.dispatched_at).limit(limit)
        .with_for_update(skip_locked=True)
    )
    never_sort(session)
    return [_dispatch(r) for r in session.execute(stmt)]


def _sent_before(queue: Any, before: datetime) -> Any:
    """`dispatched_at < before` for a job of `queue`, written as one comparison of the pair
    that only the dispatch index (queue, dispatched_at) can bound. Written plainly, PostgreSQL,
    with statistics that knew of no backlog, read the index of sending times instead and
    walked every other queue's stale jobs to find none of this one's."""
    return tuple_(jobs.c.queue, jobs.c.dispatched_at) < tuple_(queue, literal(before))


_DISPATCH_COLUMNS = (jobs.c.id, jobs.c.type, jobs.c.queue, jobs.c.priority,
                     jobs.c.dispatch_attempts, jobs.c.hard_timeout, jobs.c.timeout)


def _dispatch(row: Any) -> Dispatch:
    return Dispatch(row.id, row.type, row.queue, row.priority, row.dispatch_attempts,
                    own_limits_of(row))


def _leases(session: Session, *conditions: Any, limit: int) -> list[Lease]:
    stmt = (
        select(jobs.c.id, jobs.c.lease_token, jobs.c.attempt, jobs.c.max_attempts,
               jobs.c.retry_policy, jobs.c.cancel_requested_at, jobs.c.worker, jobs.c.task_id,
               jobs.c.rescues, jobs.c.interrupted_at, jobs.c.forcible)
        .where(jobs.c.state == S.RUNNING.value, OWN, *conditions)
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
