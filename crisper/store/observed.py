"""SQL for observed Celery tasks: batched upserts keyed by Celery's task id, and lost runs.

Observed tasks live in the jobs table (source = 'observed'), so that listing, keyset
pagination, filters and counts stay one implementation. Their id is a time-ordered UUID
minted when the task was first seen; Celery's id is in `task_id`, unique among observed rows.
Their state mirrors what Celery reports (the upsert keeps the later step): Celery, not the
transition table, decides it, and no event is written. The one move Crisper makes on them,
a lost run, is checked against the table.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, exists, func, literal_column, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from crisper.states import JobState, move
from crisper.store.models import jobs, workers
from crisper.store.statements import changed, moving

OBSERVED = "observed"
S = JobState
LOST_WORKER = move(S.FAILED, S.RUNNING)
_RANK = {S.QUEUED.value: 1, S.RUNNING.value: 2, S.RETRYING.value: 3, S.SUCCEEDED.value: 4,
         S.FAILED.value: 4, S.CANCELLED.value: 4}
LOST = {
    "type": "WorkerLost",
    "message": "the Celery worker running this observed task stopped heartbeating "
               "(killed, frozen or unreachable); Celery may or may not run it again",
}


def upsert(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Write each task's merged observation: one row statement per task, sent as one batch.

    A row already there keeps its id and first-seen facts; the later step (attempt, then rank)
    decides state and outcome, as `crisper.engine.observation.merge` does in memory.
    """
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        upsert_pg(session.connection(), rows)
        return
    ins = (postgresql.insert(jobs) if dialect == "postgresql" else sqlite.insert(jobs))
    ex = ins.excluded
    newer = tuple_(ex.attempt, _rank(ex.state)) >= tuple_(jobs.c.attempt, _rank(jobs.c.state))
    biggest, smallest = ((func.greatest, func.least) if dialect == "postgresql"
                         else (func.max, func.min))

    def later(column: str, json: bool = False) -> Any:
        """The later step's value if it has one; else the row's; else the other step's."""
        new = _known(ex[column], dialect) if json else ex[column]
        old = _known(jobs.c[column], dialect) if json else jobs.c[column]
        return case((and_(newer, new.is_not(None)), ex[column]),
                    (old.is_(None), ex[column]), else_=jobs.c[column])

    stmt = ins.on_conflict_do_update(
        index_elements=[jobs.c.task_id], index_where=text(f"source = '{OBSERVED}'"),
        set_={
            "state": case((newer, ex.state), else_=jobs.c.state),
            "attempt": biggest(jobs.c.attempt, ex.attempt),
            "max_attempts": biggest(jobs.c.max_attempts, ex.max_attempts),
            "queue": case((jobs.c.queue == "", ex.queue), else_=jobs.c.queue),
            "params": case((_known(ex.params, dialect, empty=True).is_(None), jobs.c.params),
                           (_known(jobs.c.params, dialect, empty=True).is_(None), ex.params),
                           else_=jobs.c.params),
            "result": later("result", json=True),
            "error": later("error", json=True),
            "worker": later("worker"),
            "run_at": later("run_at"),
            "started_at": later("started_at"),
            "finished_at": later("finished_at"),
            "cancelled_at": later("cancelled_at"),
            "created_at": smallest(jobs.c.created_at, ex.created_at),
            "queued_at": smallest(func.coalesce(jobs.c.queued_at, ex.queued_at),
                                  func.coalesce(ex.queued_at, jobs.c.queued_at)),
        },
    )
    session.execute(stmt, [{**_DEFAULTS, **r} for r in rows])


_DEFAULTS: dict[str, Any] = {
    "source": OBSERVED, "priority": 0, "tenant": "default", "tags": [], "retry_policy": {},
    "result": None, "error": None, "worker": None, "run_at": None, "queued_at": None,
    "started_at": None, "finished_at": None, "cancelled_at": None,
}


_COLUMNS = (
    ("id", "uuid"), ("task_id", "varchar"), ("type", "varchar"),
    ("queue", "varchar"), ("state", "varchar"),
    ("params", "jsonb"), ("result", "jsonb"), ("error", "jsonb"),
    ("attempt", "integer"), ("max_attempts", "integer"),
    ("worker", "varchar"), ("created_at", "timestamptz"), ("queued_at", "timestamptz"),
    ("run_at", "timestamptz"), ("started_at", "timestamptz"), ("finished_at", "timestamptz"),
    ("cancelled_at", "timestamptz"),
)
_RANK_SQL = ("CASE {0}.state WHEN 'queued' THEN 1 WHEN 'running' THEN 2 WHEN 'retrying' "
             "THEN 3 WHEN 'succeeded' THEN 4 WHEN 'failed' THEN 4 WHEN 'cancelled' THEN 4 "
             "ELSE 0 END")
_NEWER = (f"(excluded.attempt, {_RANK_SQL.format('excluded')}) >= "
          f"(crisper_jobs.attempt, {_RANK_SQL.format('crisper_jobs')})")


def _pg_later(column: str, json_value: bool = False) -> str:
    """The later step's value if it has one; else the row's; else the other step's."""
    new, old = f"excluded.{column}", f"crisper_jobs.{column}"
    if json_value:
        new, old = f"nullif({new}, 'null'::jsonb)", f"nullif({old}, 'null'::jsonb)"
    return (f"{column} = CASE WHEN {_NEWER} AND {new} IS NOT NULL THEN excluded.{column} "
            f"WHEN {old} IS NULL THEN excluded.{column} ELSE crisper_jobs.{column} END")


_NAMES = ", ".join(name for name, _ in _COLUMNS)
_CONSTANTS = {"source": f"'{OBSERVED}'", "priority": "0", "tenant": "'default'",
              "tags": "'[]'::jsonb", "retry_policy": "'{}'::jsonb"}
_PG_UPSERT = (
    f"INSERT INTO crisper_jobs ({_NAMES}, {', '.join(_CONSTANTS)}) "
    f"SELECT {_NAMES}, {', '.join(_CONSTANTS.values())} FROM jsonb_to_recordset(%s::jsonb) "
    f"AS r({', '.join(f'{n} {t}' for n, t in _COLUMNS)}) "
    "ON CONFLICT (task_id) WHERE source = 'observed' DO UPDATE SET "
    f"state = CASE WHEN {_NEWER} THEN excluded.state ELSE crisper_jobs.state END, "
    "attempt = greatest(crisper_jobs.attempt, excluded.attempt), "
    "max_attempts = greatest(crisper_jobs.max_attempts, excluded.max_attempts), "
    "queue = CASE WHEN crisper_jobs.queue = '' THEN excluded.queue ELSE crisper_jobs.queue END, "
    "params = CASE WHEN nullif(nullif(crisper_jobs.params, 'null'::jsonb), '{}'::jsonb) IS NULL "
    "THEN excluded.params ELSE crisper_jobs.params END, "
    + ", ".join([_pg_later("result", True), _pg_later("error", True)]
                + [_pg_later(c) for c in ("worker", "run_at", "started_at", "finished_at",
                                          "cancelled_at")]) + ", "
    "created_at = least(crisper_jobs.created_at, excluded.created_at), "
    "queued_at = least(coalesce(crisper_jobs.queued_at, excluded.queued_at), "
    "coalesce(excluded.queued_at, crisper_jobs.queued_at))"
)


def _rank(state: Any) -> Any:
    return case(_RANK, value=state, else_=0)


def _known(column: Any, dialect: str, empty: bool = False) -> Any:
    """The JSON value, or SQL NULL for JSON null (and for {} when `empty`)."""
    null: Any = literal_column("'null'::jsonb" if dialect == "postgresql" else "'null'")
    value = func.nullif(column, null)
    if empty:
        value = func.nullif(value, literal_column(
            "'{}'::jsonb" if dialect == "postgresql" else "'{}'"))
    return value


def upsert_pg(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """PostgreSQL: the batch as one statement with one parameter, the rows as JSON unpacked by
    the server (an executemany's per-row parameter handling costs the flushing process more);
    the constant columns are literals of the statement, not repeated in every row."""
    if rows:
        conn.exec_driver_sql(_PG_UPSERT, (json.dumps(rows, default=str),))


def request_revoke(session: Session, job_id: uuid.UUID, at: datetime) -> bool:
    """Note on an active observed task that Celery was asked to revoke it."""
    return bool(changed(session, update(jobs).where(
        jobs.c.id == job_id, jobs.c.source == OBSERVED,
        jobs.c.state.in_([S.QUEUED.value, S.RUNNING.value, S.RETRYING.value]),
    ).values(cancel_requested_at=at)))


def mark_lost(session: Session, at: datetime, cutoff: datetime) -> list[uuid.UUID]:
    """Observed tasks still `running` on a worker silent since before `cutoff` -> failed (lost).

    A worker is alive while its row in the worker registry is heartbeated (observing worker
    processes do it). A run started after `cutoff` is left alone: its worker may not have
    written its first heartbeat yet.
    """
    alive = exists().where(workers.c.name == jobs.c.worker,
                           workers.c.last_heartbeat_at >= cutoff)
    stale = (
        select(jobs.c.id)
        .where(jobs.c.source == OBSERVED, jobs.c.state == S.RUNNING.value,
               jobs.c.started_at < cutoff, ~alive)
        .limit(500).with_for_update(skip_locked=True)
    )
    found = session.execute(
        moving(LOST_WORKER, jobs.c.id.in_(stale.scalar_subquery()), error=LOST, finished_at=at)
        .returning(jobs.c.id)
    ).scalars().all()
    return list(found)


def heartbeat_worker(session: Session, name: str, host: str, pid: int, queues: list[str],
                     concurrency: int, at: datetime) -> None:
    """Keep an observing worker's row in the registry fresh (registered if missing)."""
    done = changed(session, update(workers).where(workers.c.name == name)
                   .values(last_heartbeat_at=at, stopped_at=None))
    if not done:
        session.execute(workers.insert().values(
            name=name, host=host, pid=pid, queues=queues, concurrency=concurrency,
            started_at=at, last_heartbeat_at=at, stopped_at=None))
