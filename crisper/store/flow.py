"""SQL for flow control on jobs: admission reads, concurrency counts, deferral and wake-up."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.orm import Session

from crisper.records import JobRecord
from crisper.states import ACTIVE, JobState, move
from crisper.store.models import job_events, jobs, queues
from crisper.store.statements import RECORD_COLUMNS, changed, event, moving

S = JobState
DEFER = move(S.SCHEDULED, S.QUEUED)  # a rate limit or a concurrency limit holds it back


@dataclass(frozen=True)
class Pending:
    """A queued job a message asks to run, with what admission needs to know about it."""

    id: uuid.UUID
    queue: str
    concurrency_key: str | None
    rate_token_at: datetime | None
    attempt: int
    paused: bool


def pending(session: Session, ids: Sequence[uuid.UUID]) -> list[Pending]:
    stmt = (
        select(jobs.c.id, jobs.c.queue, jobs.c.concurrency_key, jobs.c.rate_token_at,
               jobs.c.attempt, queues.c.paused_at)
        .select_from(jobs.outerjoin(queues, queues.c.name == jobs.c.queue))
        .where(jobs.c.id.in_(ids), jobs.c.state == S.QUEUED.value)
    )
    return [Pending(r.id, r.queue, r.concurrency_key, r.rate_token_at, r.attempt,
                    r.paused_at is not None) for r in session.execute(stmt)]


def lock_key(session: Session, key: str) -> None:
    """Serialize admissions on one concurrency key until the transaction ends.

    PostgreSQL: a transaction-scoped advisory lock. SQLite needs none: BEGIN IMMEDIATE
    already admits one writer at a time.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key})


def running(session: Session, key: str) -> int:
    stmt = select(func.count()).select_from(jobs).where(
        jobs.c.concurrency_key == key, jobs.c.state == S.RUNNING.value)
    return int(session.scalar(stmt) or 0)


def defer(session: Session, job: Pending, until: datetime, why: str, at: datetime,
          rate_token_at: datetime | None = None) -> bool:
    """queued -> scheduled until `until`, attempt untouched; the reason is in the event."""
    done = changed(
        session,
        moving(DEFER, jobs.c.id == job.id, keyed=True, run_at=until, dispatched_at=None,
               flow_wait=why, rate_token_at=rate_token_at or job.rate_token_at),
    )
    if done:
        session.execute(insert(job_events), [event(
            job.id, DEFER.source, DEFER.target, f"{why}_limited", at, job.attempt,
            detail={"until": until.isoformat()})])
    return bool(done)


def admitted(session: Session, ids: Sequence[uuid.UUID]) -> None:
    """A claimed job has used its rate token and stopped waiting."""
    session.execute(update(jobs).where(jobs.c.id.in_(ids))
                    .values(rate_token_at=None, flow_wait=None))


def wake(session: Session, key: str, count: int, at: datetime) -> int:
    """Bring forward up to `count` jobs waiting for a slot on `key` (best priority first)."""
    if count <= 0:
        return 0
    waiting = (
        select(jobs.c.id)
        .where(jobs.c.concurrency_key == key, jobs.c.state == S.SCHEDULED.value,
               jobs.c.flow_wait == "concurrency", jobs.c.run_at > at)
        .order_by(jobs.c.priority.desc(), jobs.c.id).limit(count)
    )
    return changed(session, update(jobs).where(jobs.c.id.in_(waiting.scalar_subquery()))
                   .values(run_at=at))


def active_unique(session: Session, tenant: str, key: str) -> JobRecord | None:
    """The active job holding a unique key, if any."""
    row = session.execute(
        select(*RECORD_COLUMNS).where(jobs.c.tenant == tenant, jobs.c.unique_key == key,
                                       jobs.c.state.in_([s.value for s in ACTIVE]))
    ).first()
    return JobRecord.from_row(row) if row else None


def deferred(session: Session, types: Sequence[str], why: str) -> int:
    """Jobs of these types waiting (scheduled) for a rate token or a concurrency slot."""
    stmt = select(func.count()).select_from(jobs).where(
        jobs.c.type.in_(types), jobs.c.state == S.SCHEDULED.value, jobs.c.flow_wait == why)
    return int(session.scalar(stmt) or 0)


def running_under(session: Session, scope: str) -> int:
    """Running jobs holding a slot of this limit, under any of its keys."""
    stmt = select(func.count()).select_from(jobs).where(
        jobs.c.state == S.RUNNING.value,
        (jobs.c.concurrency_key == scope)
        | jobs.c.concurrency_key.startswith(f"{scope}:", autoescape=True))
    return int(session.scalar(stmt) or 0)
