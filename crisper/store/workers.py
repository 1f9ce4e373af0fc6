"""SQL for the live-worker registry: each worker process upserts its row and heartbeats it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from crisper.records import WorkerRecord
from crisper.store.models import workers
from crisper.store.statements import changed


def register(session: Session, name: str, host: str, pid: int, queues: list[str],
             concurrency: int, at: datetime) -> None:
    session.execute(delete(workers).where(workers.c.name == name))
    session.execute(workers.insert().values(
        name=name, host=host, pid=pid, queues=queues, concurrency=concurrency,
        started_at=at, last_heartbeat_at=at, stopped_at=None,
    ))


def heartbeat(session: Session, name: str, at: datetime) -> None:
    session.execute(update(workers).where(workers.c.name == name).values(last_heartbeat_at=at))


def stopped(session: Session, name: str, at: datetime) -> None:
    session.execute(update(workers).where(workers.c.name == name).values(stopped_at=at))


def list_workers(session: Session, seen_after: datetime) -> list[WorkerRecord]:
    stmt = (
        select(workers).where(workers.c.last_heartbeat_at >= seen_after)
        .order_by(workers.c.name)
    )
    return [WorkerRecord.from_row(r) for r in session.execute(stmt)]


def forget(session: Session, seen_before: datetime) -> int:
    return changed(session, delete(workers).where(workers.c.last_heartbeat_at < seen_before))
