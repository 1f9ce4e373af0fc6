"""The dashboard's aggregates: right figures on both backends, bounded plans on a large table."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, text, update

from crisper import insights
from crisper.states import JobState
from crisper.store import utcnow
from crisper.store.jobs import JobFilter
from crisper.store.models import jobs
from tests.harness import Backend, wait_for

ROWS = int(os.environ.get("CRISPER_EXPLAIN_ROWS", "200000"))


@pytest.mark.slow
def test_activity_failure_rates_and_failed_groups(backend: Backend) -> None:
    # Given finished jobs of two tenants: three successes and three failures for acme
    backend.start_worker(concurrency=2)
    app = backend.app
    handles = [app.submit("probe.noop", {}, tenant="acme") for _ in range(3)]
    handles += [app.submit("probe.explode", {"message": "disk full"}, tenant="acme")
                for _ in range(2)]
    handles += [app.submit("probe.explode", {"message": "timeout"}, tenant="acme")]
    handles += [app.submit("probe.explode", {"message": "disk full"}, tenant="other")]
    for h in handles:
        h.wait(timeout=30)
    # ... spread over the seconds of the current minute (a minute is counted whole)
    minute = utcnow().replace(second=0, microsecond=0)
    with app.store.transaction() as session:
        for i, h in enumerate(handles):
            at = minute + timedelta(seconds=i * 7 + 1)
            session.execute(update(jobs).where(jobs.c.id == h.id)
                            .values(created_at=at, finished_at=at + timedelta(seconds=2)))

    # When the dashboard reads acme's figures
    minutes = insights.activity(app.store, "acme", now=minute + timedelta(seconds=59))
    outcomes = {o.type: (o.succeeded, o.failed) for o in insights.outcomes(app.store, "acme")}
    groups = [(g.type, g.error_type, g.message, g.count)
              for g in insights.failed_groups(app.store, "acme")]

    # Then they count acme's jobs only, per minute over the last hour
    assert len(minutes) == 60 and minutes[-1].start <= utcnow()
    assert sum(m.submitted for m in minutes) == 6
    assert sum(m.succeeded for m in minutes) == 3
    finished = [(h.record.type, h.record.state.value, h.record.finished_at) for h in handles]
    assert sum(m.failed for m in minutes) == 3, (minutes[-3:], finished, utcnow())
    assert outcomes == {"probe.noop": (3, 0), "probe.explode": (0, 3)}
    assert groups == [("probe.explode", "ValueError", "disk full", 2),
                      ("probe.explode", "ValueError", "timeout", 1)]

    # When one group is retried
    result = insights.retry_failed_group(app.store, app.jobs, "acme", "probe.explode",
                                         "ValueError", "disk full")

    # Then exactly its two jobs run again; the other tenant's twin is untouched
    assert (result.matched, result.changed) == (2, 2)
    retried = [h for h in handles if any(e.reason == "retried" for e in app.jobs.events(h.id))]
    assert len(retried) == 2 and all(h.record.tenant == "acme" for h in retried)
    wait_for(lambda: all(app.jobs.get(h.id).state is JobState.FAILED for h in retried), 30,
             "the retried jobs to fail again")


# One row every 50 ms going back in time (about 2.8 hours for 200,000 rows), so the last hour
# holds about a third of the table; ids are shaped like UUIDv7 (milliseconds first).
FILL = """
INSERT INTO crisper_jobs (id, type, queue, priority, state, tenant, params, tags, attempt,
                          max_attempts, retry_policy, created_at, queued_at, finished_at, error)
SELECT (lpad(to_hex(:now_ms - g * 50), 12, '0') || '7000' || '8' || lpad(to_hex(g), 15, '0'))::uuid,
       'type' || (g % 5), 'default', 0, s.state,
       CASE WHEN g % 10 = 0 THEN 'other' ELSE 'acme' END,
       '{}'::jsonb, '[]'::jsonb, 1, 1, '{}'::jsonb,
       to_timestamp((:now_ms - g * 50) / 1000.0), to_timestamp((:now_ms - g * 50) / 1000.0),
       CASE WHEN s.state IN ('succeeded', 'failed', 'cancelled')
            THEN to_timestamp((:now_ms - g * 50 + 20) / 1000.0) END,
       CASE WHEN s.state = 'failed'
            THEN jsonb_build_object('type', 'E' || (g % 3), 'message', 'm' || (g % 7)) END
FROM generate_series(1, :rows) AS g,
     LATERAL (SELECT (ARRAY['succeeded','succeeded','succeeded','failed','cancelled',
                             'queued','held','succeeded'])[1 + g % 8] AS state) AS s
"""


@contextmanager
def captured(backend: Backend) -> Iterator[list[tuple[str, Any]]]:
    """Every SQL statement the store runs meanwhile, with its parameters."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, context: Any,
               executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    engine = backend.app.store.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def explain(backend: Backend, statement: str, params: Any) -> tuple[dict[str, Any], float]:
    with backend.app.store.engine.connect() as conn:
        row = conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement,
                                   params).scalar_one()
    plan = (row if isinstance(row, list) else json.loads(row))[0]
    return plan["Plan"], float(plan["Execution Time"])


def rows_read(plan: dict[str, Any]) -> int:
    """Rows the scans of crisper_jobs produced or threw away."""
    here = 0
    if plan.get("Relation Name") == "crisper_jobs":
        here = int(plan.get("Actual Rows", 0)) + int(plan.get("Rows Removed by Filter", 0))
    return here + sum(rows_read(child) for child in plan.get("Plans", []))


def scans(plan: dict[str, Any]) -> list[str]:
    """Each scan on crisper_jobs as 'Node Type [index]'."""
    here = []
    if plan.get("Relation Name") == "crisper_jobs":
        here.append(f"{plan['Node Type']} [{plan.get('Index Name', '-')}]")
    return here + [s for child in plan.get("Plans", []) for s in scans(child)]


@pytest.mark.backends("postgres-redis")
@pytest.mark.slow
def test_dashboard_queries_read_only_their_window_on_a_large_table(backend: Backend) -> None:
    # Given a large jobs table spread over almost three hours
    with backend.app.store.transaction() as session:
        session.execute(text(FILL), {"now_ms": int(time.time() * 1000), "rows": ROWS})
        session.execute(text("ANALYZE crisper_jobs"))
        middle = session.scalar(text("SELECT id FROM crisper_jobs ORDER BY id DESC "
                                     "OFFSET :n LIMIT 1"), {"n": ROWS // 2})
    app = backend.app
    pages: dict[str, Callable[[], Any]] = {
        "jobs: the page newer than a cursor half-way down": lambda: app.jobs.list_jobs(
            JobFilter(tenant="acme"), after=middle, limit=51),
        "jobs: the page older than that cursor": lambda: app.jobs.list_jobs(
            JobFilter(tenant="acme"), before=middle, limit=51),
        "overview: activity per minute": lambda: insights.activity(app.store, "acme"),
        "overview: failure rate by type": lambda: insights.outcomes(app.store, "acme"),
        "failed: groups": lambda: insights.failed_groups(app.store, "acme"),
        "jobs: created in the last 5 minutes": lambda: app.jobs.list_jobs(
            JobFilter(tenant="acme", created_after=utcnow() - timedelta(minutes=5)), limit=50),
        "jobs: a tag no job has, last 5 minutes": lambda: app.jobs.list_jobs(
            JobFilter(tenant="acme", tag="nightly",
                      created_after=utcnow() - timedelta(minutes=5)), limit=50),
        "jobs: failed, last hour": lambda: app.jobs.list_jobs(
            JobFilter(tenant="acme", states=[JobState.FAILED],
                      created_after=utcnow() - timedelta(hours=1)), limit=50),
    }
    report = []
    for name, call in pages.items():
        # When a page's queries run
        with captured(backend) as statements:
            call()
        assert statements, name
        for statement, params in statements:
            plan, ms = explain(backend, statement, params)
            used = scans(plan)
            read = rows_read(plan)
            report.append(f"{name}: {ms:.1f} ms, {read} rows read, {', '.join(used)}")
            # Then none reads the whole table: every scan of the jobs table uses an index,
            # and reads at most its window (the last hour is about a third of the rows)
            assert used and all("Seq Scan" not in s for s in used), report[-1]
            assert read <= ROWS * 0.4, report[-1]
            assert ms < 1500, report[-1]  # tolerant: the 2-core machine is shared
    print(f"\n{ROWS} rows\n" + "\n".join(report))
