"""SQL for the dashboard's aggregates: per-minute activity, failure rates, failed-job groups.

Each query is bounded: activity and failure rates read one recent window through an index
(the primary key for submissions, since ids are time-ordered; finished_at for outcomes), and
the failed groups read only the newest `window` failed jobs through (state, id).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Integer, func, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from crisper.states import JobState
from crisper.store.models import jobs
from crisper.store.stats import id_floor

S = JobState
MESSAGE_CHARS = 200  # failed jobs are grouped by the start of their error message


@dataclass(frozen=True)
class FailedGroup:
    type: str
    error_type: str
    message: str
    count: int
    last_finished_at: datetime | None


def _minute(session: Session, column: Any) -> ColumnElement[Any]:
    """Whole minutes since the Unix epoch, computed in the database."""
    if session.get_bind().dialect.name == "sqlite":
        return sql_cast(func.strftime("%s", column), Integer) // 60  # `/` would be true division
    return sql_cast(func.floor(func.extract("epoch", column) / 60), Integer)


def _tenant(stmt: Any, tenant: str | None) -> Any:
    return stmt if tenant is None else stmt.where(jobs.c.tenant == tenant)


def submitted_per_minute(session: Session, since: datetime, tenant: str | None
                         ) -> dict[int, int]:
    """{minute since epoch: jobs created}; an id range scan over the window only."""
    minute = _minute(session, jobs.c.created_at)
    stmt = _tenant(select(minute, func.count()).where(jobs.c.id >= id_floor(since)), tenant)
    return {int(m): int(n) for m, n in session.execute(stmt.group_by(minute))}


def finished_per_minute(session: Session, since: datetime, tenant: str | None
                        ) -> dict[tuple[int, str], int]:
    """{(minute, succeeded|failed): jobs}; a finished_at range scan over the window only."""
    minute = _minute(session, jobs.c.finished_at)
    stmt = _tenant(
        select(minute, jobs.c.state, func.count())
        .where(jobs.c.finished_at >= since,
               jobs.c.state.in_([S.SUCCEEDED.value, S.FAILED.value])), tenant)
    return {(int(m), s): int(n) for m, s, n in session.execute(stmt.group_by(minute, jobs.c.state))}


def outcomes_by_type(session: Session, since: datetime, tenant: str | None
                     ) -> list[tuple[str, int, int]]:
    """(type, succeeded, failed) over jobs finished since `since`."""
    failed = func.sum(sql_cast(jobs.c.state == S.FAILED.value, Integer))
    stmt = _tenant(
        select(jobs.c.type, func.count() - failed, failed)
        .where(jobs.c.finished_at >= since,
               jobs.c.state.in_([S.SUCCEEDED.value, S.FAILED.value])), tenant)
    rows = session.execute(stmt.group_by(jobs.c.type).order_by(jobs.c.type)).all()
    return [(t, int(ok or 0), int(bad or 0)) for t, ok, bad in rows]


def _newest_failed(tenant: str | None, window: int) -> Any:
    """The newest `window` failed jobs (the (state, id) index), as a subquery."""
    stmt = select(jobs.c.id, jobs.c.type, jobs.c.finished_at,
                  func.coalesce(jobs.c.error["type"].as_string(), "").label("error_type"),
                  func.coalesce(func.substr(jobs.c.error["message"].as_string(), 1,
                                            MESSAGE_CHARS), "").label("message"))
    stmt = _tenant(stmt.where(jobs.c.state == S.FAILED.value), tenant)
    return stmt.order_by(jobs.c.id.desc()).limit(window).subquery()


def failed_groups(session: Session, tenant: str | None, window: int, limit: int
                  ) -> list[FailedGroup]:
    """Failed jobs grouped by type and error, biggest group first."""
    sub = _newest_failed(tenant, window)
    stmt = (select(sub.c.type, sub.c.error_type, sub.c.message, func.count(),
                   func.max(sub.c.finished_at))
            .group_by(sub.c.type, sub.c.error_type, sub.c.message)
            .order_by(func.count().desc(), sub.c.type).limit(limit))
    return [FailedGroup(t, e, m, int(n), at) for t, e, m, n, at in session.execute(stmt)]


def failed_group_ids(session: Session, tenant: str | None, window: int, type: str,
                     error_type: str, message: str) -> list[uuid.UUID]:
    """Ids of the failed jobs in one group, within the same window the page showed."""
    sub = _newest_failed(tenant, window)
    stmt = select(sub.c.id).where(sub.c.type == type, sub.c.error_type == error_type,
                                  sub.c.message == message)
    return list(session.scalars(stmt))
