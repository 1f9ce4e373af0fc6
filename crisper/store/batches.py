"""Batches in the store: their rows, counters kept in each job's outcome transaction, and
the once-only flags of their callbacks (callers own the transaction)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from crisper.records import Record
from crisper.states import JobState
from crisper.store.models import batches, jobs

S = JobState
_COUNTER = {S.SUCCEEDED: "succeeded", S.FAILED: "failed", S.CANCELLED: "cancelled"}
KINDS = ("success", "complete", "death")  # the callbacks a batch may have


@dataclass(frozen=True)
class BatchRecord(Record):
    id: uuid.UUID
    tenant: str
    description: str | None
    total: int
    succeeded: int
    failed: int
    cancelled: int
    callbacks: dict[str, Any]
    created_at: datetime
    finished_at: datetime | None
    success_fired_at: datetime | None
    complete_fired_at: datetime | None
    death_fired_at: datetime | None

    @property
    def ended(self) -> int:
        return self.succeeded + self.failed + self.cancelled

    @property
    def pending(self) -> int:
        return self.total - self.ended


_COLUMNS = [batches.c[name] for name in BatchRecord.__dataclass_fields__]


def create(session: Session, values: dict[str, Any]) -> None:
    session.execute(insert(batches).values(**values))


def get(session: Session, batch_id: uuid.UUID, tenant: str | None = None) -> BatchRecord | None:
    stmt = select(*_COLUMNS).where(batches.c.id == batch_id)
    if tenant is not None:
        stmt = stmt.where(batches.c.tenant == tenant)
    row = session.execute(stmt).first()
    return BatchRecord.from_row(row) if row else None


def list_batches(session: Session, tenant: str | None, limit: int = 50) -> list[BatchRecord]:
    stmt = select(*_COLUMNS).order_by(batches.c.created_at.desc()).limit(limit)
    if tenant is not None:
        stmt = stmt.where(batches.c.tenant == tenant)
    return [BatchRecord.from_row(r) for r in session.execute(stmt)]


def job_ids(session: Session, batch_id: uuid.UUID, states: list[JobState] | None = None
            ) -> list[uuid.UUID]:
    stmt = select(jobs.c.id).where(jobs.c.batch_id == batch_id).order_by(jobs.c.id)
    if states:
        stmt = stmt.where(jobs.c.state.in_([s.value for s in states]))
    return list(session.scalars(stmt))


def count_move(db: Session | Connection, batch_id: uuid.UUID, source: JobState,
               target: JobState, at: datetime) -> BatchRecord | None:
    """Count a job's end (or take a retried job's end back out); the row stays locked until
    the caller's transaction ends, so concurrent outcomes of one batch count one by one."""
    values: dict[str, Any] = {}
    if target in _COUNTER:
        column = batches.c[_COUNTER[target]]
        values[column.name] = column + 1
    if source in _COUNTER:
        column = batches.c[_COUNTER[source]]
        values[column.name] = column - 1
        values["finished_at"] = None
    if not values:
        return None
    row = db.execute(update(batches).where(batches.c.id == batch_id).values(**values)
                     .returning(*_COLUMNS)).first()
    if row is None:
        return None
    record = BatchRecord.from_row(row)
    if record.pending == 0 and record.finished_at is None:
        db.execute(update(batches).where(batches.c.id == batch_id).values(finished_at=at))
    return record


def _condition(kind: str) -> Any:
    ended = batches.c.succeeded + batches.c.failed + batches.c.cancelled
    return {"success": batches.c.succeeded == batches.c.total,
            "complete": ended == batches.c.total,
            "death": batches.c.failed > 0}[kind]


def fire_once(db: Session | Connection, batch_id: uuid.UUID, kind: str, at: datetime) -> bool:
    """Flip the kind's once-only flag if its condition holds and it is not set yet: True for
    the one transaction that flipped it (the one that must write the callback)."""
    flag = batches.c[f"{kind}_fired_at"]
    stmt = (update(batches)
            .where(and_(batches.c.id == bindparam("b"), flag.is_(None), _condition(kind)))
            .values({flag.name: bindparam("at")}).returning(batches.c.id))
    return db.execute(stmt, {"b": batch_id, "at": at}).first() is not None
