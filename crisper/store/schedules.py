"""SQL for cron schedules (claiming a fire by moving next_fire_at) and maintenance runs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from crisper.records import JobRecord, Record
from crisper.states import ACTIVE
from crisper.store.models import jobs, maintenance_runs, schedules
from crisper.store.statements import RECORD_COLUMNS, changed


@dataclass(frozen=True)
class ScheduleRecord(Record):
    name: str
    type: str
    params: dict[str, Any]
    queue: str | None
    priority: int | None
    tenant: str
    cron: str
    timezone: str
    enabled: bool
    overlap: str
    catchup: str
    catchup_window: float
    jitter: float
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    last_job_id: uuid.UUID | None
    last_error: str | None
    fires: int
    skipped: int
    created_at: datetime
    updated_at: datetime
    source: str


@dataclass(frozen=True)
class MaintenanceRun:
    unit: str
    every: float
    last_run_at: datetime
    last_count: int
    last_by: str | None


def create(session: Session, values: dict[str, Any]) -> None:
    session.execute(insert(schedules).values(**values))


def _named(name: str, tenant: str) -> Any:
    return (schedules.c.name == name) & (schedules.c.tenant == tenant)


def replace(session: Session, name: str, tenant: str, values: dict[str, Any]) -> int:
    return changed(session, update(schedules).where(_named(name, tenant)).values(**values))


def get(session: Session, name: str, tenant: str, for_update: bool = False
        ) -> ScheduleRecord | None:
    stmt = select(schedules).where(_named(name, tenant))
    if for_update:
        stmt = stmt.with_for_update()
    row = session.execute(stmt).first()
    return ScheduleRecord.from_row(row) if row else None


def list_schedules(session: Session, tenant: str | None = None) -> list[ScheduleRecord]:
    stmt = select(schedules).order_by(schedules.c.name)
    if tenant is not None:
        stmt = stmt.where(schedules.c.tenant == tenant)
    return [ScheduleRecord.from_row(r) for r in session.execute(stmt)]


def from_code(session: Session, tenant: str) -> list[ScheduleRecord]:
    """The tenant's schedules declared in code, locked while the scheduler syncs them."""
    stmt = (select(schedules).where(schedules.c.tenant == tenant, schedules.c.source == "code")
            .order_by(schedules.c.name).with_for_update())
    return [ScheduleRecord.from_row(r) for r in session.execute(stmt)]


def remove(session: Session, name: str, tenant: str) -> int:
    return changed(session, delete(schedules).where(_named(name, tenant)))


def due(session: Session, at: datetime, limit: int) -> list[ScheduleRecord]:
    stmt = (
        select(schedules)
        .where(schedules.c.enabled.is_(True), schedules.c.next_fire_at <= at)
        .order_by(schedules.c.next_fire_at).limit(limit)
    )
    return [ScheduleRecord.from_row(r) for r in session.execute(stmt)]


def advance(session: Session, name: str, tenant: str, seen: datetime, to: datetime,
            at: datetime) -> bool:
    """Claim the fires up to `seen`'s successor: only one scheduler moves the time it saw."""
    return bool(changed(
        session,
        update(schedules)
        .where(_named(name, tenant), schedules.c.next_fire_at == seen,
               schedules.c.enabled.is_(True))
        .values(next_fire_at=to, updated_at=at),
    ))


def record_fires(session: Session, name: str, tenant: str, fired: int, skipped: int,
                 last_fire_at: datetime | None, last_job_id: uuid.UUID | None,
                 error: str | None) -> None:
    values: dict[str, Any] = {"fires": schedules.c.fires + fired,
                              "skipped": schedules.c.skipped + skipped, "last_error": error}
    if last_fire_at is not None:
        values["last_fire_at"] = last_fire_at
    if last_job_id is not None:
        values["last_job_id"] = last_job_id
    session.execute(update(schedules).where(_named(name, tenant)).values(**values))


def active_jobs(session: Session, name: str, tenant: str) -> list[JobRecord]:
    """The jobs of this schedule that have not finished (for the overlap policy)."""
    stmt = select(*RECORD_COLUMNS).where(
        jobs.c.schedule_name == name, jobs.c.tenant == tenant,
        jobs.c.state.in_([s.value for s in ACTIVE])
    ).with_for_update()
    return [JobRecord.from_row(r) for r in session.execute(stmt)]


def note_run(session: Session, unit: str, every: float, at: datetime, count: int,
             by: str) -> None:
    values = {"unit": unit, "every": every, "last_run_at": at, "last_count": count,
              "last_by": by}
    maker = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = maker(maintenance_runs).values(**values)
    session.execute(stmt.on_conflict_do_update(
        index_elements=[maintenance_runs.c.unit],
        set_={k: stmt.excluded[k] for k in ("every", "last_run_at", "last_count", "last_by")},
    ))


def maintenance(session: Session) -> dict[str, MaintenanceRun]:
    rows = session.execute(select(maintenance_runs))
    return {r.unit: MaintenanceRun(r.unit, r.every, r.last_run_at, r.last_count, r.last_by)
            for r in rows}
