"""Worker loss: SIGKILL of the main process and of one pool child, SIGTERM and SIGQUIT mid-job,
SIGSTOP past the lease. Expected: every job ends succeeded, each body ran to its end once."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.fault_suite.conftest import Scenario
from tests.fault_suite.private import FaultBackend
from tests.fault_suite.tally import settled
from tests.harness import wait_for

pytestmark = pytest.mark.faults

POLICIES = pytest.mark.parametrize("job_type", ["fault.once", "fault.retry"],
                                   ids=["no-retry", "retry"])


def start(fb: FaultBackend, scenario: Scenario, n: int = 8, seconds: float = 1.0,
          types: tuple[str, ...] = ("fault.once", "fault.retry"), check: bool = True) -> None:
    """Submit `n` jobs of `seconds`, split between `types`."""
    for i, type_ in enumerate(types):
        share = n // len(types) + (i < n % len(types))
        scenario.submit(fb.app, type_, share, seconds=seconds, check=check)


@POLICIES
def test_sigkill_worker_main(fb: FaultBackend, scenario: Scenario, job_type: str) -> None:
    # Given a worker running jobs of a type with (or without) a retry option
    worker = fb.start_worker(concurrency=2)
    fb.start_scheduler()
    start(fb, scenario, types=(job_type,))
    wait_for(lambda: fb.started() >= 2, 30, "two jobs to start")

    # When its main process is SIGKILLed (its pool children orphaned) and a new worker starts
    os.kill(worker.pid, signal.SIGKILL)
    fb.start_worker(concurrency=2)
    scenario.fault_over()

    # Then every job succeeds (losing a worker is not the job's failure), each body ran once
    scenario.finish(fb, recover_within=20)


@POLICIES
def test_sigkill_pool_child(fb: FaultBackend, scenario: Scenario, job_type: str) -> None:
    # Given a worker running jobs of a type with (or without) a retry option
    fb.start_worker(concurrency=2)
    fb.start_scheduler()
    start(fb, scenario, types=(job_type,))
    child = wait_for(lambda: next((m.pid for m in fb.marks() if m.event == "start"), None),
                     30, "a job to start")

    # When the pool child running one job is SIGKILLed (OOM killer); the main process lives on
    os.kill(child, signal.SIGKILL)
    scenario.fault_over()

    # Then every job succeeds, each body ran to its end once
    scenario.finish(fb, recover_within=20)


@pytest.mark.parametrize(("sig", "group"), [(signal.SIGTERM, False), (signal.SIGTERM, True),
                                           (signal.SIGQUIT, False)],
                         ids=["sigterm", "sigterm-process-group", "sigquit"])
def test_signal_mid_job(fb: FaultBackend, scenario: Scenario, sig: signal.Signals,
                        group: bool) -> None:
    """SIGTERM: Celery's warm shutdown lets running jobs finish; SIGQUIT: cold, cuts them.
    SIGTERM to the whole process group is what systemd (KillMode=control-group), `kill -TERM
    -PGID` and container runtimes' init often do: the pool children get it too."""
    # Given a worker running two-second jobs, with and without a retry option
    worker = fb.start_worker(concurrency=2)
    fb.start_scheduler()
    start(fb, scenario, seconds=2.0)
    wait_for(lambda: fb.started() >= 2, 30, "two jobs to start")

    # When its main process gets the signal, and a new worker is started
    if group:
        worker.signal(sig)
    else:
        os.kill(worker.pid, sig)
    worker.popen.wait(30)
    fb.start_worker(concurrency=2)
    scenario.fault_over()
    scenario.note(f"worker exit code {worker.popen.returncode}")

    # Then every job succeeds, each body ran to its end once
    scenario.finish(fb, recover_within=20)


def test_sigstop_past_the_lease_then_sigcont(fb: FaultBackend, scenario: Scenario) -> None:
    # Given a worker running 2.5-second jobs (they check for cancellation before each step)
    frozen = fb.start_worker(concurrency=2)
    fb.start_scheduler()
    start(fb, scenario, n=6, seconds=2.5)
    wait_for(lambda: fb.started() >= 2, 30, "two jobs to start")

    # When the first worker is frozen past its lease, the others finish the work, and it wakes
    frozen.signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    fb.start_worker(concurrency=2)
    wait_for(lambda: settled(fb.app.store, scenario.ids), 40, "the jobs to end while it is frozen")
    scenario.note(f"frozen {time.monotonic() - stopped_at:.0f}s")
    frozen.signal(signal.SIGCONT)
    scenario.fault_over()
    time.sleep(2)  # the stale attempts wake, learn their lease is gone, and stop

    # Then every job succeeded once: the stale bodies stopped at their next check
    scenario.finish(fb, recover_within=5)
