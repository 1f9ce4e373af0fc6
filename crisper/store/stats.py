"""SQL for monitoring: queue figures, running jobs per worker, and the /metrics aggregates.

Every query here is bounded by an index: active states (few rows), a recent finished_at
window, or a recent id range (ids are time-ordered).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Float, case, func, select, text
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from crisper.states import ACTIVE, TERMINAL, JobState
from crisper.store.models import job_events, jobs

S = JobState


@dataclass(frozen=True)
class QueueRow:
    queue: str
    queued: int
    running: int
    oldest_queued_at: datetime | None
    finished_last_minute: int


def ping(session: Session) -> None:
    session.execute(text("SELECT 1"))


_MAX_MILLIS = 0xFFFF_FFFF_FFFF


def id_floor(at: datetime) -> uuid.UUID:
    """The smallest time-ordered job id minted at or after `at` (see crisper.ids).

    Ids hold 48 bits of Unix milliseconds: a time before 1970 floors at the first id (every
    job is after it), one past the 48-bit range at the last.
    """
    millis = min(max(int(at.timestamp() * 1000), 0), _MAX_MILLIS)
    return uuid.UUID(int=millis << 80)


def queue_rows(session: Session, minute_ago: datetime) -> list[QueueRow]:
    waiting = session.execute(
        select(jobs.c.queue, jobs.c.state, func.count(), func.min(jobs.c.queued_at))
        .where(jobs.c.state.in_([S.QUEUED.value, S.RUNNING.value]))
        .group_by(jobs.c.queue, jobs.c.state)
    ).all()
    finished: dict[str, int] = {
        q: int(n) for q, n in session.execute(
            select(jobs.c.queue, func.count())
            .where(jobs.c.finished_at >= minute_ago).group_by(jobs.c.queue)
        )
    }
    figures: dict[str, dict[str, Any]] = {}
    for queue, state, count, oldest in waiting:
        row = figures.setdefault(queue, {"queued": 0, "running": 0, "oldest": None})
        row[state] = count
        if state == S.QUEUED.value:
            row["oldest"] = oldest
    names = sorted(set(figures) | set(finished))
    return [
        QueueRow(q, figures.get(q, {}).get("queued", 0), figures.get(q, {}).get("running", 0),
                 figures.get(q, {}).get("oldest"), int(finished.get(q, 0)))
        for q in names
    ]


def running_by_worker(session: Session) -> list[tuple[str, uuid.UUID]]:
    """(worker, job id) of every running job; `worker` is "<celery name>:<pid>"."""
    rows = session.execute(
        select(jobs.c.worker, jobs.c.id).where(jobs.c.state == S.RUNNING.value)
    ).all()
    return [(r.worker or "", r.id) for r in rows]


def active_counts(session: Session) -> list[tuple[str, str, int]]:
    """(type, state, count) of jobs not yet finished."""
    rows = session.execute(
        select(jobs.c.type, jobs.c.state, func.count())
        .where(jobs.c.state.in_([s.value for s in ACTIVE])).group_by(jobs.c.type, jobs.c.state)
    ).all()
    return [(t, s, int(n)) for t, s, n in rows]


def submitted_since(session: Session, at: datetime) -> list[tuple[str, int]]:
    rows = session.execute(
        select(jobs.c.type, func.count()).where(jobs.c.id >= id_floor(at)).group_by(jobs.c.type)
    ).all()
    return [(t, int(n)) for t, n in rows]


def finished_since(session: Session, at: datetime) -> list[tuple[str, str, int]]:
    rows = session.execute(
        select(jobs.c.type, jobs.c.state, func.count())
        .where(jobs.c.finished_at >= at, jobs.c.state.in_([s.value for s in TERMINAL]))
        .group_by(jobs.c.type, jobs.c.state)
    ).all()
    return [(t, s, int(n)) for t, s, n in rows]


def _seconds(session: Session, later: Any, earlier: Any) -> ColumnElement[float]:
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(later) - func.julianday(earlier)) * 86400.0
    return sql_cast(func.extract("epoch", later - earlier), Float)


def histogram_since(session: Session, at: datetime, which: str, bounds: Sequence[float]
                    ) -> list[tuple[str, list[int], int, float]]:
    """Per type: cumulative counts at each bound, the count and the sum of seconds.

    `which` is "duration" (started -> finished) or "wait" (queued -> started), over the jobs
    that finished since `at`.
    """
    if which == "duration":
        seconds = _seconds(session, jobs.c.finished_at, jobs.c.started_at)
    else:
        seconds = _seconds(session, jobs.c.started_at, jobs.c.queued_at)
    columns = [func.sum(case((seconds <= b, 1), else_=0)) for b in bounds]
    rows = session.execute(
        select(jobs.c.type, func.count(), func.coalesce(func.sum(seconds), 0.0), *columns)
        .where(jobs.c.finished_at >= at, jobs.c.started_at.is_not(None),
               jobs.c.queued_at.is_not(None))
        .group_by(jobs.c.type)
    ).all()
    return [(r[0], [int(c or 0) for c in r[3:]], int(r[1]), float(r[2])) for r in rows]


def rescues_since(session: Session, at: datetime) -> int:
    """Running jobs whose lease ran out (their worker died) since `at`."""
    return int(session.execute(
        select(func.count()).select_from(job_events)
        .where(job_events.c.reason == "worker_lost", job_events.c.at >= at)
    ).scalar_one())
