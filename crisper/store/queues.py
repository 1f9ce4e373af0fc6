"""SQL for queues: durable pause and resume, and per-queue figures for listings."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from crisper.states import NOT_STARTED, JobState
from crisper.store.models import jobs, queues

S = JobState


@dataclass(frozen=True)
class QueueRecord:
    """A queue as the CLI and API show it: pause state and what waits or runs on it."""

    name: str
    paused_at: datetime | None
    queued: int
    running: int
    waiting: int  # scheduled, retrying or held
    oldest_queued_at: datetime | None

    @property
    def paused(self) -> bool:
        return self.paused_at is not None


def set_paused(session: Session, name: str, paused: bool, at: datetime) -> None:
    """Pause (or resume) `name`; the row outlives every process, so the pause does too."""
    values = {"name": name, "paused_at": at if paused else None, "updated_at": at}
    dialect = session.get_bind().dialect.name
    maker = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = maker(queues).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[queues.c.name],
        set_={"paused_at": stmt.excluded.paused_at, "updated_at": stmt.excluded.updated_at},
    )
    session.execute(stmt)


def paused(session: Session) -> set[str]:
    return set(session.scalars(select(queues.c.name).where(queues.c.paused_at.is_not(None))))


def forget_dispatch(session: Session, names: Collection[str]) -> int:
    """Queued jobs of resumed queues get their wake-up sent again by the relay."""
    result = session.execute(
        update(jobs).where(jobs.c.queue.in_(list(names)), jobs.c.state == S.QUEUED.value)
        .values(dispatched_at=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def list_queues(session: Session, known: Collection[str] = ()) -> list[QueueRecord]:
    """Every queue that has active jobs, a pause row, or is named in `known`."""
    counts: dict[str, dict[str, int]] = {}
    oldest: dict[str, datetime] = {}
    active = sorted(s.value for s in NOT_STARTED | {S.RUNNING})  # workflow nodes wait apart
    stmt = (select(jobs.c.queue, jobs.c.state, func.count(), func.min(jobs.c.queued_at))
            .where(jobs.c.state.in_(active)).group_by(jobs.c.queue, jobs.c.state))
    for queue, state, n, first in session.execute(stmt):
        counts.setdefault(queue, {})[state] = n
        if state == S.QUEUED.value and first is not None:
            oldest[queue] = first
    pauses = {r.name: r.paused_at for r in session.execute(select(queues))}
    names = sorted(set(counts) | set(pauses) | set(known))
    out = []
    for name in names:
        c = counts.get(name, {})
        waiting = sum(c.get(s.value, 0) for s in NOT_STARTED - {S.QUEUED})  # held, timed
        first = oldest.get(name)
        out.append(QueueRecord(name, pauses.get(name), c.get(S.QUEUED.value, 0),
                               c.get(S.RUNNING.value, 0), waiting, first))
    return out
