"""Cancellation under faults: a queued job cancelled and every worker restarted, a running job
that never checks, and cancels asked while the scheduler is down. Expected: a cancelled job
never starts (or stops), the reason is recorded, and nothing else is touched."""

from __future__ import annotations

import time

import pytest

from tests.fault_suite.conftest import Scenario
from tests.fault_suite.private import FaultBackend
from tests.fault_suite.tally import settled
from tests.harness import wait_for

pytestmark = pytest.mark.faults
CANCELLED = {"cancelled", "cancel_forced"}


def never_ran(fb: FaultBackend, ids: list) -> None:
    ran = {m.job_id for m in fb.marks()} & set(map(str, ids))
    assert not ran, f"cancelled jobs started: {sorted(ran)}"


def test_cancel_queued_then_all_workers_restarted(fb: FaultBackend, scenario: Scenario) -> None:
    # Given ten queued jobs, their messages in the broker, and no worker yet
    keep = scenario.submit(fb.app, "fault.once", 5, seconds=0.2)
    drop = scenario.submit(fb.app, "fault.retry", 5, seconds=0.2)
    # When five are cancelled, a worker takes every message, and all workers are restarted
    for job_id in drop:
        fb.app.get(job_id).cancel()
    first = fb.start_worker(concurrency=2)
    fb.start_scheduler()
    wait_for(lambda: settled(fb.app.store, keep), 30, "the others to run")
    first.stop()
    fb.start_worker(concurrency=2)
    scenario.fault_over()
    time.sleep(3)  # a re-sent message would run a job now
    # Then the five ended cancelled and never started; the others succeeded
    figures = scenario.finish(fb, cancelled={"cancelled"})
    assert (figures.succeeded, sum(figures.cancelled.values())) == (5, 5)
    never_ran(fb, drop)


def test_cancel_running_job_that_never_checks(fb: FaultBackend, scenario: Scenario) -> None:
    """The documented limit: a body that never checks is stopped by force after the grace.
    The killed processes were working through their queue's backlog: the jobs waiting behind
    them run next, without waiting for the relay's re-send of lost wake-ups (set to 60 s)."""
    # Given two long jobs whose bodies never check for cancellation, two more waiting
    fb.start_worker(concurrency=2)
    fb.start_scheduler(CRISPER_REDISPATCH_AFTER_SECONDS="60")
    ids = scenario.submit(fb.app, "fault.once", 2, seconds=60, check=False)
    wait_for(lambda: fb.started() >= 2, 30, "both to start")
    behind = scenario.submit(fb.app, "fault.once", 2, seconds=0.2)
    # When both are cancelled
    for job_id in ids:
        fb.app.get(job_id).cancel()
    scenario.fault_over()
    # Then both end cancelled by force within the grace, and their bodies are stopped
    grace = float(fb.env["CRISPER_CANCEL_GRACE_SECONDS"])
    figures = scenario.finish(fb, cancelled={"cancel_forced"}, overlaps_allowed=True,
                              recover_within=grace + 5)
    assert sum(figures.cancelled.values()) == 2 and figures.succeeded == 2
    waited = max(fb.app.get(i).record.finished_at for i in behind) - min(
        fb.app.get(i).record.finished_at for i in ids)
    scenario.note(f"the jobs behind ended {waited.total_seconds():.1f} s after the kill")
    assert waited.total_seconds() < 5, waited
    wait_for(lambda: quiet(fb), 10, "the forcibly cancelled bodies to stop")


def quiet(fb: FaultBackend) -> bool:
    """No body has written a mark for a second (they tick every 0.2 s while they run)."""
    return time.time() - max(m.at for m in fb.marks()) > 1.0


def test_cancel_while_the_scheduler_is_down(fb: FaultBackend, scenario: Scenario) -> None:
    # Given a worker running four jobs (two never check) and four queued, no scheduler
    fb.start_worker(concurrency=4)
    checking = scenario.submit(fb.app, "fault.once", 2, seconds=30)
    deaf = scenario.submit(fb.app, "fault.retry", 2, seconds=30, check=False)
    wait_for(lambda: fb.started() >= 4, 30, "four jobs to run")
    queued = scenario.submit(fb.app, "fault.once", 4, seconds=0.2)  # behind the four running
    # When all eight are cancelled while no scheduler runs, then the scheduler comes back
    # (the waiting ones first: a slot freed by a cancelled running job claims the next queued
    # job at once, so a waiting job not yet cancelled then may rightly start)
    for job_id in [*queued, *checking, *deaf]:
        fb.app.get(job_id).cancel()
    time.sleep(2)
    fb.start_scheduler()
    scenario.fault_over()
    # Then every one ended cancelled; the queued ones never started; no body ran to its end
    figures = scenario.finish(fb, cancelled=CANCELLED, recover_within=15)
    assert sum(figures.cancelled.values()) == 8
    never_ran(fb, queued)
    assert not [m for m in fb.marks() if m.event == "end"]
