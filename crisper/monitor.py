"""Read-only views for operators: job types, queues, workers, readiness and metric figures.

The API, the CLI and the dashboard show these; none of them writes anything.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from crisper.errors import CrisperError
from crisper.retention import FINAL_STATES
from crisper.store import stats as stats_sql
from crisper.store import utcnow
from crisper.store import workers as worker_sql

if TYPE_CHECKING:
    from registry import JobType, Registry

    from crisper.engine.dispatcher import Dispatcher
    from crisper.settings import Settings
    from crisper.store import Store

# Seconds; the same buckets serve run time and wait time.
BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0, 3600.0)
WORKERS_SHOWN_FOR = timedelta(days=1)


def job_types(settings: Settings, registry: Registry) -> list[dict[str, Any]]:
    """Every registered job type with its options and its parameters' JSON Schema."""
    return [
        {"name": jt.name, "queue": jt.options.queue, "priority": jt.options.priority,
         "timeout": jt.options.timeout, "max_attempts": jt.options.retry.attempts,
         "description": jt.description, "params": jt.json_schema(),
         "hard_timeout": jt.options.timeout and jt.options.timeout + jt.options.kill_grace(
             settings.kill_grace_seconds),
         "cancel_grace": (settings.cancel_grace_seconds if jt.options.cancel_grace is None
                          else jt.options.cancel_grace),
         "retention": _retention(settings, jt)}
        for jt in sorted(registry, key=lambda t: t.name)
    ]


def _retention(settings: Settings, job_type: JobType) -> dict[str, float | None]:
    """Seconds a finished job is kept per final state, and before its payload is dropped."""
    default = settings.retention_seconds
    own = job_type.options.retention
    kept: dict[str, float | None] = {
        s.value: own.age(s, default) if own else default for s in FINAL_STATES}
    kept["payload"] = own.payload_seconds if own else None
    return kept


@dataclass(frozen=True)
class QueueInfo:
    name: str
    depth: int
    running: int
    oldest_waiting_seconds: float | None
    throughput_last_minute: int


def queues(store: Store, registry: Registry) -> list[QueueInfo]:
    """Each queue a job type uses or a job sits in: waiting, running, age of the oldest, pace."""
    now = utcnow()
    with store.read() as session:
        rows = {r.queue: r for r in stats_sql.queue_rows(session, now - timedelta(minutes=1))}
    names = sorted(set(rows) | {jt.options.queue for jt in registry})
    out = []
    for name in names:
        r = rows.get(name)
        if r is None:
            out.append(QueueInfo(name, 0, 0, None, 0))
            continue
        age = (now - r.oldest_queued_at).total_seconds() if r.oldest_queued_at else None
        out.append(QueueInfo(name, r.queued, r.running, age if age is None else max(age, 0.0),
                             r.finished_last_minute))
    return out


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    started_at: datetime
    last_heartbeat_at: datetime
    status: str  # alive | lost (heartbeats stopped) | stopped (shut down cleanly)
    running_jobs: list[uuid.UUID] = field(default_factory=list)


def worker_status(last_heartbeat_at: datetime, stopped_at: datetime | None, now: datetime,
                  lost_after: float) -> str:
    if stopped_at is not None:
        return "stopped"
    if (now - last_heartbeat_at).total_seconds() > lost_after:
        return "lost"
    return "alive"


def workers(store: Store, settings: Settings) -> list[WorkerInfo]:
    """Workers seen in the last day; one whose heartbeats stopped is shown as lost."""
    now = utcnow()
    with store.read() as session:
        records = worker_sql.list_workers(session, now - WORKERS_SHOWN_FOR)
        running = stats_sql.running_by_worker(session)
    by_worker: dict[str, list[uuid.UUID]] = {}
    for worker, job_id in running:
        by_worker.setdefault(worker.rpartition(":")[0] or worker, []).append(job_id)
    lost_after = settings.worker_lost_after_seconds
    return [
        WorkerInfo(w.name, w.host, w.pid, list(w.queues), w.concurrency, w.started_at,
                   w.last_heartbeat_at,
                   worker_status(w.last_heartbeat_at, w.stopped_at, now, lost_after),
                   sorted(by_worker.get(w.name, [])))
        for w in records
    ]


def readiness(store: Store, dispatcher: Dispatcher) -> dict[str, str | None]:
    """{"database": None | why not, "broker": None | why not}: None means reachable."""
    problems: dict[str, str | None] = {"database": None, "broker": None}
    try:
        with store.read() as session:
            stats_sql.ping(session)
    except CrisperError as exc:
        problems["database"] = str(exc)
    except Exception as exc:  # a driver error that is not a connection error still means "no"
        problems["database"] = f"the database check failed: {exc}"
    problems["broker"] = _broker_problem(dispatcher)
    return problems


def _broker_problem(dispatcher: Dispatcher) -> str | None:
    try:
        with dispatcher.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
    except CrisperError as exc:
        return str(exc)
    except Exception as exc:
        return f"the broker is unavailable: {exc}"
    return None


@dataclass(frozen=True)
class Histogram:
    type: str
    cumulative: list[int]  # one count per bound in BUCKETS
    count: int
    total: float


@dataclass(frozen=True)
class Figures:
    """What /metrics reports, read from the store in one go."""

    window_seconds: float
    active: list[tuple[str, str, int]]
    submitted: list[tuple[str, int]]
    finished: list[tuple[str, str, int]]
    durations: list[Histogram]
    waits: list[Histogram]
    queues: list[QueueInfo]
    rescues: int


def figures(store: Store, settings: Settings, registry: Registry) -> Figures:
    window = settings.metrics_window_seconds
    since = utcnow() - timedelta(seconds=window)
    with store.read() as session:
        active = stats_sql.active_counts(session)
        submitted = stats_sql.submitted_since(session, since)
        finished = stats_sql.finished_since(session, since)
        durations = [Histogram(*h) for h in
                     stats_sql.histogram_since(session, since, "duration", BUCKETS)]
        waits = [Histogram(*h) for h in stats_sql.histogram_since(session, since, "wait", BUCKETS)]
        rescues = stats_sql.rescues_since(session, since)
    return Figures(window, active, submitted, finished, durations, waits, queues(store, registry),
                   rescues)
