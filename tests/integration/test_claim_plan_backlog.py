"""A claim reads the first entries of its queue's index, however long the backlog and whatever
statistics PostgreSQL holds.

The hot statements run prepared, so PostgreSQL soon plans them once for any parameters (its
generic plan), from the statistics of the moment. Once the tables had statistics (ANALYZE,
as autovacuum runs it) taken with a backlog queued, the paused-queue check, then a join per
row, was estimated to leave about one row: the claim sorted the whole backlog instead, 21 ms
per claim with 50,000 jobs queued, and a 200,000-job drain fell from about 1,950 to 25 jobs/s.
Statistics taken while the queue was empty (or none at all) estimate any backlog at one row:
PostgreSQL then preferred a shorter index of queued jobs and sorted the backlog (13 ms per
claim with 20,000 queued), until the engine the claims run on turned sorting off.
Here both kinds of statistics meet a backlog, and the generic plans of the claims are read on
that engine's connection.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from bench.scale import captured  # the statements the store runs, as bench.scale takes them
from crisper import Crisper
from crisper.states import JobState
from crisper.store import attempts as attempt_sql
from crisper.store import queues as queue_sql
from crisper.store import utcnow
from tests.harness import Backend
from tests.integration.backlogs import (
    analyze,
    explained,
    fill,
    jobs_pages_read,
    json_plan,
    nodes,
)

pytestmark = pytest.mark.backends("postgres-redis")
BACKLOG = 20_000
JOB = "plan.noop"
# A queue name as long as many in use: with it, 20,000 entries make the claim index two
# levels deep, and that extra level was what lost the claim index the planner's tie.
QUEUE_PREFIX = "a-backlog-of-plan-tests-"


def generic_plan(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any]) -> dict[str, Any]:
    """EXPLAIN ANALYZE of `sql` as a prepared statement's generic plan, in a transaction that
    is rolled back: the plan a long-running worker runs."""
    names: list[str] = []

    def numbered(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    prepared = re.sub(r"%\((\w+)\)s", numbered, sql)
    name = f"p_{uuid.uuid4().hex[:8]}"
    with conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE {name} AS {prepared}")
        cursor = psycopg.ClientCursor(conn)
        arguments = ", ".join(["%s"] * len(names))
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE {name}({arguments})",
                       [params[n] for n in names])
        row = cursor.fetchone()
        conn.execute(f"DEALLOCATE {name}")
    assert row is not None
    return json_plan(row)


def queue_backlog(app: Crisper, queue: str, analyze_first: bool) -> None:
    """BACKLOG jobs queued on `queue` (which has a row of its own, not paused), with the
    tables analyzed after they are queued or, `analyze_first`, before (an idle queue)."""
    if analyze_first:
        analyze(app, "crisper_jobs", "crisper_queues")
    with app.store.transaction() as session:
        fill(session, queue, JOB, BACKLOG)
        queue_sql.set_paused(session, queue, True, utcnow())
        queue_sql.set_paused(session, queue, False, utcnow())
    if not analyze_first:
        analyze(app, "crisper_jobs", "crisper_queues")


def assert_reads_the_claim_index(plan: dict[str, Any]) -> None:
    """No sort, only index scans of the jobs (the claim index among them), a few dozen pages
    at most (a plan that sorts the backlog reads every one of its ~500 heap pages)."""
    on_jobs = [n for n in nodes(plan) if n.get("Relation Name") == "crisper_jobs"
               and "Scan" in n["Node Type"]]
    kinds = {n["Node Type"] for n in nodes(plan)}
    read = jobs_pages_read(plan)
    assert "Sort" not in kinds, kinds
    assert {n["Node Type"] for n in on_jobs} == {"Index Scan"}, on_jobs
    assert "ix_crisper_jobs_next_in_queue" in {n.get("Index Name") for n in on_jobs}
    assert read < 100, read


@pytest.mark.parametrize("analyzed", ["with the backlog", "while the queue was empty"])
def test_claims_read_a_few_index_pages_of_a_backlog(backend: Backend, analyzed: str) -> None:
    # Given 20,000 jobs queued on one queue, with statistics taken of it as it is, or of it
    # empty before they came
    app = backend.app_with(queues=["default"])
    queue = QUEUE_PREFIX + uuid.uuid4().hex[:8]
    queue_backlog(app, queue, analyze_first=analyzed != "with the backlog")

    # When a slot claims the best job, then records its outcome with the next claim, on the
    # connection a pool slot uses
    held = app.store.held_autocommit()
    with held.step() as conn, captured() as seen:
        first = attempt_sql.claim_next(conn, queue, [JOB], "w", "t", 30, utcnow())
        assert first is not None
        fused = attempt_sql.finish_then_claim_next(
            conn, first.id, first.lease_token, JobState.SUCCEEDED, utcnow(), reason="succeeded",
            worker="w", queue=queue, types=[JOB], task_id="t", lease_seconds=30)
        assert fused.recorded and fused.claimed is not None

    # Then both took jobs of the top priority, and each statement's generic plan reads the
    # claim index's first entries
    with app.store.transaction() as session:
        priorities = session.execute(text(
            "SELECT priority FROM crisper_jobs WHERE id IN (:a, :b)"),
            {"a": first.id, "b": fused.claimed.id}).scalars().all()
    assert priorities == [5, 5]
    claims = [(sql, params) for sql, params in seen if "FOR UPDATE SKIP LOCKED" in sql]
    assert len(claims) == 2
    with held.step() as conn:
        raw = conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        for sql, params in claims:
            assert_reads_the_claim_index(generic_plan(raw, sql, params))
    held.release()
    app.store.close()


def test_a_gated_claim_reads_the_claim_index_of_a_backlog_analyzed_empty(backend: Backend) -> None:
    # Given 20,000 jobs queued after the tables were analyzed with none
    app = backend.app_with(queues=["default"])
    queue = QUEUE_PREFIX + uuid.uuid4().hex[:8]
    queue_backlog(app, queue, analyze_first=True)

    # When a limited type's claim looks for the best job in its transaction (the flow gate's
    # path), and the same statement is explained there
    with app.store.transaction() as session:
        best, (plan,) = explained(session, lambda s: attempt_sql.next_queued(s, queue, [JOB]))

    # Then it found a job of the top priority through the claim index, with no sort
    assert best is not None
    with app.store.transaction() as session:
        assert session.execute(text("SELECT priority FROM crisper_jobs WHERE id = :id"),
                               {"id": best[0]}).scalar_one() == 5
    assert_reads_the_claim_index(plan)
    app.store.close()
