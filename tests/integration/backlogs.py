"""Long backlogs written straight into the jobs table, and the plans PostgreSQL makes for them:
for tests that a statement's cost does not grow with the backlog."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.orm import Session

from bench.scale import (  # the statements the store runs, as bench.scale takes them
    captured,
    is_setting,
)
from crisper import Crisper
from crisper.store import utcnow

# `rows` queued jobs on one queue: ids time-ordered like the store's (from `first` on, so that
# several fills do not meet), priorities 0 and 5, their wake-up sent at `dispatched` (or not).
FILL = """
INSERT INTO crisper_jobs (id, type, queue, priority, state, tenant, params, tags, attempt,
                          max_attempts, retry_policy, created_at, queued_at, dispatched_at)
SELECT (lpad(to_hex(:now_ms + g), 12, '0') || '7000' || '8' || lpad(to_hex(g), 15, '0'))::uuid,
       :type, :queue, CASE WHEN g % 10 = 0 THEN 5 ELSE 0 END, 'queued', 'default',
       '{}'::jsonb, '[]'::jsonb, 0, 1, '{}'::jsonb, now(), now(), :dispatched
FROM generate_series(CAST(:first AS int), CAST(:first AS int) + CAST(:rows AS int) - 1) AS g
"""


def fill(session: Session, queue: str, job_type: str, rows: int, first: int = 1,
         dispatched: datetime | None = None) -> None:
    session.execute(text(FILL), {"now_ms": int(utcnow().timestamp() * 1000), "type": job_type,
                                 "queue": queue, "rows": rows, "first": first,
                                 "dispatched": dispatched})


def fill_queues(app: Crisper, job_type: str, queues: dict[str, tuple[int, datetime | None]]
                ) -> dict[str, str]:
    """The tables analyzed empty (as on an idle server), then for each of `queues`, {name:
    (rows, their wake-up sent at)}, a queue of that many jobs, ids ascending from the first
    queue to the last. Answers each name's queue, made unique to this call."""
    analyze(app, "crisper_jobs")
    tag = uuid.uuid4().hex[:8]
    names = {name: f"{name}-{tag}" for name in queues}
    first = 1
    with app.store.transaction() as session:
        for name, (rows, dispatched) in queues.items():
            fill(session, names[name], job_type, rows, first=first, dispatched=dispatched)
            first += rows
    return names


def analyze(app: Crisper, *tables: str) -> None:
    """Statistics of `tables` as they are now, as autovacuum would take them."""
    with app.store.engine.connect() as conn:
        for table in tables:
            conn.execute(text(f"ANALYZE {table}"))
        conn.commit()


def explained(session: Session, call: Callable[[Session], Any]
              ) -> tuple[Any, list[dict[str, Any]]]:
    """`call`'s answer, and the plans of the queries it ran, each explained in its transaction
    (with whatever the call set there: its SET statements are not explained) and run again."""
    with captured() as seen:
        answer = call(session)
    raw = session.connection().connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    cursor = psycopg.ClientCursor(raw)
    plans = []
    for sql, params in seen:
        if not is_setting(sql):
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", params)
            plans.append(json_plan(cursor.fetchone()))
    return answer, plans


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def json_plan(row: Any) -> dict[str, Any]:
    """The plan of an `EXPLAIN (FORMAT JSON)` row."""
    plan = row[0]
    return (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]


def jobs_pages_read(plan: dict[str, Any]) -> int:
    """Shared buffers the plan's scans of crisper_jobs read (hit or not)."""
    return sum(n.get("Shared Hit Blocks", 0) + n.get("Shared Read Blocks", 0)
               for n in nodes(plan) if n.get("Relation Name") == "crisper_jobs"
               and "Scan" in n["Node Type"])
