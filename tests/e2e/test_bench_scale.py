"""bench.scale on a tiny table: the hot statements and every list page can be index-bound.

No timing is asserted: with a few thousand rows the planner may rightly prefer a sequential
scan, so the plans are taken with enable_seqscan off, which asks whether an index *can*
serve each statement (a statement no index can serve still scans the table).
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from bench import scale
from crisper.store.models import jobs
from tests.conftest import require


@pytest.mark.timeout(120)
def test_claim_outcome_relay_and_list_statements_use_an_index_on_a_loaded_table() -> None:
    # Given PostgreSQL and Redis, and a fresh schema with 3,000 finished jobs and a few queued
    require("postgres")
    require("redis")
    with scale.scale_world(scale.PG_BASE, scale.REDIS, "head") as app:
        scale.load(app.store.engine, 3000, chunk=1000)
        scale.seed_live(app, 5)
        with app.store.read() as session:
            by_state = dict(session.execute(
                select(jobs.c.state, func.count()).group_by(jobs.c.state)).all())

        # When the statements the store runs are captured and explained
        lists = scale.list_paths(app)
        plans = scale.explain(app.store.engine, {**scale.PATHS, **lists},
                              force_index=True)

    # Then the load made finished jobs in the intended mix, plus the queued ones
    assert by_state == {"succeeded": 2700, "failed": 240, "cancelled": 60, "queued": 5}
    # And every path was captured: claim and outcome, the relay's scans, each list page
    paths = {p.path for p in plans}
    assert {"claim + outcome", "relay + timers"} <= paths
    assert set(lists) <= paths and len(lists) >= 8
    # (a wake-up's first claim, an outcome with the next claim, as in a backlog, the last
    # outcome alone)
    claim = [p.statement for p in plans if p.path == "claim + outcome"]
    assert len(claim) == 3, claim
    assert "finished AS" in claim[1] and "claimed AS" in claim[1], claim[1]
    # And none of them scans the jobs table
    scanning = {p.path: p.verdict for p in plans if not p.index_bound}
    assert scanning == {}
    assert all("Index" in p.plan for p in plans), [p.plan for p in plans if "Index" not in p.plan]
