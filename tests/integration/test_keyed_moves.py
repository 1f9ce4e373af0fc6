"""A claim and an outcome find their job by primary key, whatever PostgreSQL's statistics say.

The partial indexes of queued, running and active jobs look empty to the planner when the
table was analyzed while no job waited (a fresh install, a queue that had drained). With the
state checked as a plain `state = 'queued'`, the planner then chose one of them and read it
whole, filtering on the id: a cost that grew with the backlog (statements.state_in).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text

from bench.scale import captured  # the statements the store runs, as bench.scale takes them
from crisper.service import SubmitRequest
from crisper.states import JobState as S
from crisper.store import attempts as attempt_sql
from crisper.store import utcnow
from tests.harness import Backend

pytestmark = pytest.mark.backends("postgres-redis")
BY_KEY = {"pk_crisper_jobs", "ix_crisper_jobs_next_in_queue"}  # the claim's own order


def job_indexes(plan: dict[str, Any]) -> set[str]:
    """The indexes a plan reads crisper_jobs through (each node, all the way down)."""
    found = {plan["Index Name"]} if plan.get("Relation Name") == "crisper_jobs" and \
        "Index Name" in plan else set()
    for child in plan.get("Plans", []):
        found |= job_indexes(child)
    return found


def test_a_claim_and_an_outcome_read_no_partial_index_of_states(backend: Backend) -> None:
    # Given statistics taken while nothing was queued, then 2,000 queued jobs
    app = backend.app
    with app.store.engine.connect() as conn:
        conn.execute(text("ANALYZE crisper_jobs"))
        conn.commit()
    app.submit_many([SubmitRequest("probe.noop") for _ in range(2000)])

    # When a slot claims a job and records its outcome with the next claim
    with captured() as seen, app.store.autocommit() as conn:
        job = attempt_sql.claim_next(conn, "default", ["probe.noop"], "w", "t", 30, utcnow(),
                                     forcible=True)
        assert job is not None
        after = attempt_sql.finish_then_claim_next(
            conn, job.id, job.lease_token, S.SUCCEEDED, utcnow(), reason="succeeded",
            worker="w", queue="default", types=["probe.noop"], task_id="t", lease_seconds=30,
            forcible=True)
        assert after.recorded and after.claimed is not None

    # Then each statement, as PostgreSQL plans it now, reads jobs by key or in claim order
    assert len(seen) == 2
    with app.store.engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()
        for sql, params in seen:
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
            plan = cursor.fetchone()[0]
            plan = json.loads(plan) if isinstance(plan, str) else plan
            assert job_indexes(plan[0]["Plan"]) <= BY_KEY, sql
        conn.rollback()
