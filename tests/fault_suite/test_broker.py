"""Broker faults on a private redis-server: restarted empty, FLUSHALL, down for 5 s mid-drain,
restarted under steady new load, down while jobs are submitted; and Redis' visibility timeout.
Expected: every job ends succeeded, each body ran to its end once."""

from __future__ import annotations

import statistics
import threading
import time

import pytest

from crisper import JobState
from tests.fault_suite.conftest import Scenario
from tests.fault_suite.private import FaultBackend
from tests.harness import wait_for

pytestmark = pytest.mark.faults


def draining(fb: FaultBackend, scenario: Scenario, n: int = 40) -> None:
    """A worker and a scheduler working through `n` short jobs, with and without retries."""
    fb.start_worker(concurrency=2)
    fb.start_scheduler()
    scenario.submit(fb.app, "fault.once", n // 2, seconds=0.2)
    scenario.submit(fb.app, "fault.retry", n - n // 2, seconds=0.2)
    wait_for(lambda: fb.started() >= 4, 30, "the drain to be under way")


def test_broker_restarted_empty(fb: FaultBackend, scenario: Scenario) -> None:
    # Given a drain under way
    draining(fb, scenario)
    # When the broker restarts with no persistence: every waiting message is gone
    assert fb.redis_server is not None
    fb.redis_server.restart_empty()
    scenario.fault_over()
    # Then the relay sends the lost jobs again: all succeed, each once
    scenario.finish(fb, timeout=45, recover_within=30)


def test_broker_flushall(fb: FaultBackend, scenario: Scenario) -> None:
    draining(fb, scenario)
    assert fb.redis_server is not None
    with fb.redis_server.client() as client:
        client.flushall()
    scenario.fault_over()
    scenario.finish(fb, timeout=45, recover_within=30)


def test_broker_killed_for_5s_mid_drain(fb: FaultBackend, scenario: Scenario) -> None:
    draining(fb, scenario)
    assert fb.redis_server is not None
    fb.redis_server.kill()
    time.sleep(5)
    fb.redis_server.start()
    scenario.fault_over()
    scenario.finish(fb, timeout=45, recover_within=30)


def test_broker_restarted_under_steady_load(fb: FaultBackend, scenario: Scenario) -> None:
    """Jobs whose messages were lost start within a lease plus a relay interval, although the
    queue never empties (new jobs keep arriving faster than the worker takes them)."""
    # Given a worker kept busy by a steady stream of new jobs, more than it can take
    fb.start_worker(concurrency=2)
    fb.start_scheduler()
    stop = threading.Event()

    def feed() -> None:  # about 3 s of work per second for 2 processes
        while not stop.wait(0.25):
            scenario.submit(fb.app, "fault.once", 2, seconds=0.4)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        time.sleep(3)
        # When the broker restarts empty in the middle of it
        assert fb.redis_server is not None
        waiting = set(map(str, scenario.ids)) - {m.job_id for m in fb.marks()}
        fb.redis_server.restart_empty()
        restarted = time.time()
        scenario.fault_over()
        time.sleep(10)
    finally:
        stop.set()
        feeder.join(10)

    # Then the jobs whose messages were lost ran soon, not after the queue emptied
    bound = sum(float(fb.env[k]) for k in ("CRISPER_LEASE_SECONDS",
                                            "CRISPER_REDISPATCH_AFTER_SECONDS")) + 4

    def worst() -> float:
        starts = {m.job_id: m.at for m in fb.marks() if m.event == "start"}
        return max((starts.get(j, float("inf")) - restarted for j in waiting), default=0.0)

    scenario.note(lambda: f"{len(waiting)} jobs lost their message; the last started "
                          f"{worst():.1f}s after the restart (bound {bound:.0f}s)")
    scenario.finish(fb, timeout=60)
    assert waiting, "some jobs should have been waiting when the broker restarted"
    assert worst() <= bound


def test_submit_while_the_broker_is_down(fb: FaultBackend, scenario: Scenario) -> None:
    """Each submit commits its job and returns at once; the relay dispatches it later."""
    # Given a worker and a scheduler, and a broker that goes down
    fb.start_worker(concurrency=2)
    fb.start_scheduler()
    assert fb.redis_server is not None
    fb.redis_server.kill()

    # When jobs are submitted one by one (stopping early if submits block: on a broken build
    # each one waits for the broker's timeouts)
    took = []
    began = time.monotonic()
    while len(took) < 20 and time.monotonic() - began < 15:
        t0 = time.perf_counter()
        job = fb.app.submit("fault.once", {"seconds": 0.1})
        took.append(time.perf_counter() - t0)
        scenario.ids.append(job.id)
        assert job.state is JobState.QUEUED
    median, worst = statistics.median(took), max(took)
    scenario.note(f"submit latency median {median * 1000:.0f} ms, max {worst * 1000:.0f} ms "
                  f"({len(took)} submits)")

    # Then, once the broker is back, all of them run, each once
    time.sleep(2)
    fb.redis_server.start()
    scenario.fault_over()
    scenario.finish(fb, timeout=45, recover_within=30)
    assert median < 0.1 and worst < 1.0, f"submits blocked: median {median:.3f}s, max {worst:.3f}s"


def test_visibility_timeout_redelivery(fb: FaultBackend, scenario: Scenario) -> None:
    """A job outliving Redis' visibility timeout, and one delayed past it, each run once."""
    # Given a broker that re-delivers any message unacknowledged for one second
    fast_redelivery = ('{"visibility_timeout": 1, "unacked_restore_interval": 1, '
                       '"unacked_restore_throttle": 1}')
    worker = fb.start_worker(concurrency=2, CRISPER_BROKER_TRANSPORT_OPTIONS=fast_redelivery)
    fb.start_scheduler()
    # When a six-second job runs and another is delayed by three seconds
    long_job = fb.app.submit("fault.once", {"seconds": 6})
    delayed = fb.app.submit("fault.once", {"seconds": 0.2}, delay=3)
    scenario.ids += [long_job.id, delayed.id]
    scenario.fault_over()
    # Then each ran once, although the long job's message really was delivered again
    scenario.finish(fb, timeout=45)
    task_id = long_job.refresh().record.task_id
    received = worker.output().count(f"[{task_id}] received")
    assert received >= 2, worker.output()[-2000:]
