"""The webhook outbox: deliveries written with the event that causes them, leased by the
schedulers that send them, and their tries recorded (callers own the transaction)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from crisper import webhook_events as events
from crisper.records import JobRecord, Record
from crisper.states import TERMINAL, JobState
from crisper.store import batches as batch_sql
from crisper.store.models import (
    deliveries,
    delivery_attempts,
    jobs,
    subscriptions,
    webhook_secrets,
)
from crisper.store.statements import RECORD_COLUMNS, changed

S = JobState
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
Db = Session | Connection


@dataclass(frozen=True)
class DeliveryRecord(Record):
    id: uuid.UUID
    tenant: str
    event_id: uuid.UUID
    event: str
    url: str | None
    subscription_id: uuid.UUID | None
    job_id: uuid.UUID | None
    batch_id: uuid.UUID | None
    body: dict[str, Any]
    state: str
    attempts: int
    next_at: datetime
    give_up_at: datetime | None
    lease_token: uuid.UUID | None
    last_status: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class AttemptRecord(Record):
    at: datetime
    status: int | None
    error: str | None
    seconds: float


_COLUMNS = [deliveries.c[name] for name in DeliveryRecord.__dataclass_fields__]


# -- written with the event ------------------------------------------------------------------

@contextmanager
def atomic(db: Db) -> Iterator[None]:
    """One transaction around a job move and its outbox rows, even on an autocommit
    connection (PostgreSQL's fast path): there psycopg opens BEGIN … COMMIT itself."""
    driver = db.connection.driver_connection if isinstance(db, Connection) else None
    if driver is not None and getattr(driver, "autocommit", False):
        with driver.transaction():
            yield
        return
    yield


def notifies(job_table: Any) -> Any:
    """SQL: may this job's events cause deliveries or batch counts? (read at the claim)"""
    return or_(job_table.c.callback_url.is_not(None), job_table.c.batch_id.is_not(None),
               exists().where(subscriptions.c.tenant == job_table.c.tenant))


def job_moved(db: Db, job_id: uuid.UUID, source: JobState, target: JobState,
              at: datetime, reason: str) -> None:
    """The outbox side of a job's move, in the move's own transaction: its subscribers' and
    its callback_url's deliveries, and its batch's counters and callbacks."""
    ends = target in TERMINAL
    reopens = source in TERMINAL and target not in TERMINAL
    if not (ends or reopens or target is S.RETRYING):
        return
    subscribed = exists().where(subscriptions.c.tenant == jobs.c.tenant)
    row = db.execute(select(*RECORD_COLUMNS, subscribed.label("subscribed"))
                     .where(jobs.c.id == job_id)).first()
    if row is None:
        return
    job = JobRecord.from_row(row)
    if job.batch_id is not None and (ends or reopens):
        _batch_moved(db, job.batch_id, source, target, at)
    if reopens:
        return
    event = events.job_event(target, reason)
    if event is None or not (row.subscribed or (ends and job.callback_url)):
        return
    data = events.job_body(job)
    if ends and job.callback_url:
        add(db, job.tenant, events.JOB_CALLBACK, data, at, url=job.callback_url, job_id=job.id,
            batch_id=job.batch_id)
    if row.subscribed:
        emit(db, job.tenant, event, data, at, job_id=job.id, batch_id=job.batch_id,
             type=job.type, queue=job.queue)


def emit(db: Db, tenant: str, event: str, data: dict[str, Any], at: datetime, *,
         job_id: uuid.UUID | None = None, batch_id: uuid.UUID | None = None,
         type: str | None = None, queue: str | None = None) -> int:
    """One delivery per subscription of `tenant` to `event` (and, for job events, whose type
    and queue filters match). Any event source calls this in its own transaction (workflows
    emit workflow.finished this way). Answers how many deliveries it wrote."""
    subs = db.execute(select(subscriptions).where(subscriptions.c.tenant == tenant)).all()
    event_id = uuid.uuid4()  # the same event to every subscriber: receivers deduplicate on it
    written = 0
    for sub in subs:
        if event not in sub.events:
            continue
        if (sub.type and sub.type != type) or (sub.queue and sub.queue != queue):
            continue
        add(db, tenant, event, data, at, url=sub.url, subscription_id=sub.id, job_id=job_id,
            batch_id=batch_id, event_id=event_id)
        written += 1
    return written


def add(db: Db, tenant: str, event: str, data: dict[str, Any], at: datetime, *,
        url: str | None, job_id: uuid.UUID | None = None, batch_id: uuid.UUID | None = None,
        subscription_id: uuid.UUID | None = None, event_id: uuid.UUID | None = None) -> uuid.UUID:
    """Write one delivery, due now. With no url, `data` is a callback job to submit."""
    event_id = event_id or uuid.uuid4()
    body = events.envelope(event, event_id, at, data) if url else data
    delivery_id = uuid.uuid4()
    db.execute(insert(deliveries).values(
        id=delivery_id, tenant=tenant, event_id=event_id, event=event, url=url,
        subscription_id=subscription_id, job_id=job_id, batch_id=batch_id, body=body,
        state=PENDING, attempts=0, next_at=at, created_at=at))
    return delivery_id


def _batch_moved(db: Db, batch_id: uuid.UUID, source: JobState, target: JobState,
                 at: datetime) -> None:
    """Count the move; each callback whose condition now holds fires here, once."""
    batch = batch_sql.count_move(db, batch_id, source, target, at)
    if batch is None or target not in TERMINAL:
        return
    for kind in batch_sql.KINDS:
        if kind == "death" and target is not S.FAILED:
            continue
        if kind != "death" and batch.pending:
            continue
        if not batch_sql.fire_once(db, batch_id, kind, at):
            continue
        summary = batch_summary(batch, kind)
        callback = batch.callbacks.get(kind) or {}
        if callback.get("url"):
            add(db, batch.tenant, f"batch.{kind}", summary, at, url=callback["url"],
                batch_id=batch_id)
        if callback.get("job"):
            job = {**callback["job"], "idempotency_key": f"batch:{batch_id}:{kind}"}
            add(db, batch.tenant, f"batch.{kind}", job, at, url=None, batch_id=batch_id)
        if kind == "complete":
            emit(db, batch.tenant, events.BATCH_FINISHED, summary, at, batch_id=batch_id)


def batch_summary(batch: batch_sql.BatchRecord, kind: str | None = None) -> dict[str, Any]:
    body = {"id": str(batch.id), "description": batch.description, "total": batch.total,
            "succeeded": batch.succeeded, "failed": batch.failed, "cancelled": batch.cancelled,
            "pending": batch.pending}
    return {**body, "callback": kind} if kind else body


# -- sent by the schedulers ------------------------------------------------------------------

def any_due(session: Session, at: datetime) -> bool:
    """A read first: the claim's write (a lock on SQLite) only when something is due."""
    stmt = select(deliveries.c.id).where(deliveries.c.state == PENDING,
                                         deliveries.c.next_at <= at).limit(1)
    return session.execute(stmt).first() is not None


def claim_due(session: Session, at: datetime, limit: int, lease_until: datetime
              ) -> list[DeliveryRecord]:
    """Lease due deliveries (pending, next try due, no live lease) to this scheduler.

    Row locks skipped by the others (SKIP LOCKED) and the lease make one scheduler send each;
    a scheduler killed mid-send leaves a lease that expires, and another sends it again.
    """
    free = or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < at)
    ids = select(deliveries.c.id).where(
        deliveries.c.state == PENDING, deliveries.c.next_at <= at, free,
    ).order_by(deliveries.c.next_at).limit(limit).with_for_update(skip_locked=True)
    token = uuid.uuid4()
    rows = session.execute(
        update(deliveries).where(deliveries.c.id.in_(ids.scalar_subquery()))
        .values(lease_token=token, lease_until=lease_until, attempts=deliveries.c.attempts + 1,
                last_attempt_at=at)
        .returning(*_COLUMNS)).all()
    return [DeliveryRecord.from_row(r) for r in rows]


def record_try(session: Session, d: DeliveryRecord, at: datetime, *, status: int | None,
               error: str | None, seconds: float, state: str, next_at: datetime | None,
               give_up_at: datetime | None) -> bool:
    """Write one try's outcome, fenced by the lease token (a late sender writes nothing)."""
    values: dict[str, Any] = {"state": state, "lease_token": None, "lease_until": None,
                              "last_status": status, "last_error": error,
                              "give_up_at": func.coalesce(deliveries.c.give_up_at, give_up_at)}
    if next_at is not None:
        values["next_at"] = next_at
    if state == DELIVERED:
        values["delivered_at"] = at
    done = changed(session, update(deliveries).where(
        deliveries.c.id == d.id, deliveries.c.lease_token == d.lease_token).values(**values))
    if done:
        session.execute(insert(delivery_attempts).values(
            delivery_id=d.id, at=at, status=status, error=error, seconds=seconds))
    return bool(done)


def redeliver(session: Session, delivery_id: uuid.UUID, tenant: str | None, at: datetime
              ) -> bool:
    """Send again now, whatever its state, with a fresh give-up time (same event id)."""
    where = [deliveries.c.id == delivery_id]
    if tenant is not None:
        where.append(deliveries.c.tenant == tenant)
    return bool(changed(session, update(deliveries).where(and_(*where)).values(
        state=PENDING, next_at=at, give_up_at=None, lease_token=None, lease_until=None)))


# -- read --------------------------------------------------------------------------------------

def get(session: Session, delivery_id: uuid.UUID, tenant: str | None = None
        ) -> DeliveryRecord | None:
    stmt = select(*_COLUMNS).where(deliveries.c.id == delivery_id)
    if tenant is not None:
        stmt = stmt.where(deliveries.c.tenant == tenant)
    row = session.execute(stmt).first()
    return DeliveryRecord.from_row(row) if row else None


def list_deliveries(session: Session, tenant: str | None, *, job_id: uuid.UUID | None = None,
                    batch_id: uuid.UUID | None = None, state: str | None = None,
                    limit: int = 100) -> list[DeliveryRecord]:
    stmt = select(*_COLUMNS).order_by(deliveries.c.created_at.desc()).limit(limit)
    for column, value in ((deliveries.c.tenant, tenant), (deliveries.c.job_id, job_id),
                          (deliveries.c.batch_id, batch_id), (deliveries.c.state, state)):
        if value is not None:
            stmt = stmt.where(column == value)
    return [DeliveryRecord.from_row(r) for r in session.execute(stmt)]


def attempts_of(session: Session, delivery_id: uuid.UUID) -> list[AttemptRecord]:
    stmt = select(delivery_attempts.c.at, delivery_attempts.c.status, delivery_attempts.c.error,
                  delivery_attempts.c.seconds).where(
        delivery_attempts.c.delivery_id == delivery_id).order_by(delivery_attempts.c.id)
    return [AttemptRecord.from_row(r) for r in session.execute(stmt)]


# -- subscriptions and secrets ---------------------------------------------------------------

def add_subscription(session: Session, values: dict[str, Any]) -> None:
    session.execute(insert(subscriptions).values(**values))


def list_subscriptions(session: Session, tenant: str | None) -> list[Any]:
    stmt = select(subscriptions).order_by(subscriptions.c.created_at)
    if tenant is not None:
        stmt = stmt.where(subscriptions.c.tenant == tenant)
    return list(session.execute(stmt).all())


def remove_subscription(session: Session, sub_id: uuid.UUID, tenant: str | None) -> bool:
    stmt = delete(subscriptions).where(subscriptions.c.id == sub_id)
    if tenant is not None:
        stmt = stmt.where(subscriptions.c.tenant == tenant)
    return bool(changed(session, stmt))


def secrets_in_force(session: Session, tenant: str, at: datetime) -> list[str]:
    """The tenant's secrets still signing, newest first."""
    stmt = select(webhook_secrets.c.secret).where(
        webhook_secrets.c.tenant == tenant,
        or_(webhook_secrets.c.expires_at.is_(None), webhook_secrets.c.expires_at > at),
    ).order_by(webhook_secrets.c.created_at.desc())
    return list(session.scalars(stmt))


def add_secret(session: Session, tenant: str, secret: str, at: datetime,
               overlap: timedelta | None) -> None:
    """A new secret signs from now on; the ones in force keep signing for `overlap`."""
    if overlap is not None:
        session.execute(update(webhook_secrets).where(
            webhook_secrets.c.tenant == tenant, webhook_secrets.c.expires_at.is_(None),
        ).values(expires_at=at + overlap))
    session.execute(insert(webhook_secrets).values(
        id=f"{tenant[:40]}:{uuid.uuid4().hex[:16]}", tenant=tenant, secret=secret,
        created_at=at))


def add_first_secret(session: Session, tenant: str, secret: str, at: datetime) -> None:
    """The tenant's first secret, made once however many schedulers ask at the same time."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    make = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(make(webhook_secrets).values(
        id=f"{tenant[:40]}:first", tenant=tenant, secret=secret, created_at=at,
    ).on_conflict_do_nothing())


def prune(session: Session, ended_before: datetime, limit: int) -> int:
    """Delete delivered and failed deliveries last tried before `ended_before` (with their
    tries); pending ones are never pruned."""
    old = select(deliveries.c.id).where(
        deliveries.c.state.in_([DELIVERED, FAILED]),
        deliveries.c.last_attempt_at < ended_before).limit(limit)
    ids = list(session.scalars(old))
    if not ids:
        return 0
    session.execute(delete(delivery_attempts).where(delivery_attempts.c.delivery_id.in_(ids)))
    return changed(session, delete(deliveries).where(deliveries.c.id.in_(ids)))


def pending_count(session: Session, ids: Sequence[uuid.UUID]) -> int:
    stmt = select(func.count()).select_from(deliveries).where(
        deliveries.c.id.in_(list(ids)), deliveries.c.state == PENDING)
    return int(session.scalar(stmt) or 0)
