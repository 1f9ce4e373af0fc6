"""PostgreSQL stopped with `pg_ctl -m immediate` (a crash: connections cut, no clean shutdown)
on a private cluster: for 10 s within the lease, and for 10 s past it. Expected: every job ends
succeeded, a body that finished keeps its outcome, each body ran to its end once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault_suite.conftest import Scenario
from tests.fault_suite.private import FaultBackend, PrivatePostgres, fault_backend
from tests.harness import wait_for

pytestmark = pytest.mark.faults
OUTAGE = 10.0


@pytest.fixture(params=[15, 3], ids=["within-lease", "past-lease"])
def lease_fb(request: pytest.FixtureRequest, private_postgres: PrivatePostgres,
             tmp_path: Path) -> Iterator[FaultBackend]:
    """A private backend whose lease is longer (15 s) or shorter (3 s) than the outage."""
    private_postgres.ensure_running()
    with fault_backend(tmp_path, private_postgres,
                       CRISPER_LEASE_SECONDS=str(request.param)) as backend:
        yield backend


def test_postgres_stopped_for_10s(lease_fb: FaultBackend, scenario: Scenario) -> None:
    fb = lease_fb
    assert fb.postgres is not None
    # Given a worker and a scheduler working through one-second jobs, with and without retries
    fb.start_worker(concurrency=2)
    fb.start_scheduler()
    scenario.submit(fb.app, "fault.once", 8, seconds=1.0)
    scenario.submit(fb.app, "fault.retry", 8, seconds=1.0)
    wait_for(lambda: fb.started() >= 2, 30, "jobs to start")

    # When PostgreSQL crashes (immediate stop) and comes back 10 s later
    fb.postgres.stop("immediate")
    time.sleep(OUTAGE)
    fb.postgres.start()
    scenario.fault_over()
    scenario.note(f"lease {fb.env['CRISPER_LEASE_SECONDS']}s, outage {OUTAGE:.0f}s")

    # Then every job succeeds: finished bodies keep their outcome, none runs twice
    scenario.finish(fb, timeout=60, recover_within=45)
