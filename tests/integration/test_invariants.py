"""One test per invariant in DESIGN.md, each with a real fault: SIGKILL, SIGSTOP, a broker that
forgets everything, a broker that is down, a database connection that drops."""

from __future__ import annotations

import os
import signal
import time
from collections import defaultdict
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crisper import JobState, SubmitRequest
from crisper.embedded import EmbeddedBroker, free_port
from crisper.engine.dispatch import queue_depth
from crisper.store.models import jobs
from tests.faults import CuttableProxy
from tests.harness import Backend, wait_for

S = JobState


def states(backend: Backend) -> dict[str, int]:
    with backend.app.store.read() as session:
        rows = session.execute(select(jobs.c.state, func.count()).group_by(jobs.c.state))
        return {state: n for state, n in rows}


def all_terminal(backend: Backend, total: int) -> bool:
    counts = states(backend)
    return sum(counts.get(s.value, 0) for s in (S.SUCCEEDED, S.FAILED, S.CANCELLED)) == total


def attempt_intervals(backend: Backend, killed_at: float) -> dict[str, list[tuple[float, float]]]:
    """Each job's attempts as [start, end]; an attempt killed mid-run ends at the kill."""
    starts: dict[tuple[str, int], float] = {}
    ends: dict[tuple[str, int], float] = {}
    for row in backend.probe_rows():
        (starts if row.event == "start" else ends)[(row.job_id, row.attempt)] = row.at
    intervals: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for key, start in starts.items():
        intervals[key[0]].append((start, ends.get(key, killed_at)))
    return intervals


def assert_no_overlap(backend: Backend, intervals: dict[str, list[tuple[float, float]]]) -> None:
    for job_id, spans in intervals.items():
        spans.sort()
        for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False):
            history = [(e.at.timestamp(), e.attempt, e.to_state, e.reason, e.worker)
                       for e in backend.app.jobs.events(job_id)]
            rows = [(r.attempt, r.event, r.pid, r.at) for r in backend.probe_rows()
                    if r.job_id == job_id]
            assert next_start >= end, f"job {job_id}: overlap: {rows}; {history}"


def test_killing_a_worker_loses_no_job_and_never_runs_one_twice_at_once(backend: Backend) -> None:
    """Invariants 2 and 3: SIGKILL mid-run; leases expire; all succeed, one attempt at a time.

    A killed attempt has no "end" mark; it ended when its process was killed.
    """
    # Given 120 jobs and two workers busy with them
    handles = backend.app.submit_many(
        [SubmitRequest("probe.sleep", {"seconds": 0.3}) for _ in range(120)])
    doomed = backend.start_worker(concurrency=2)
    backend.start_worker(concurrency=2)
    backend.start_scheduler()
    wait_for(lambda: len(backend.probe_rows()) >= 20, 60, "jobs to be running")

    # When one worker is killed with SIGKILL (main process and its children)
    doomed.kill()
    killed_at = time.time()

    # Then every job still ends succeeded, none stays running, and no attempts overlapped
    wait_for(lambda: all_terminal(backend, 120), 180, "all jobs to finish", every=0.5)
    assert states(backend) == {"succeeded": 120}
    assert_no_overlap(backend, attempt_intervals(backend, killed_at))
    rescued = [e for h in handles for e in backend.app.jobs.events(h.id)
               if e.reason == "worker_lost"]
    assert rescued, "the kill should have cut at least one attempt short"
    assert all(e.to_state == "queued" for e in rescued)  # rescued: no attempt spent


def test_a_broker_that_forgets_every_message_loses_no_job(backend: Backend) -> None:
    """Invariant 1: the database is the truth; the relay re-sends what the broker lost."""
    # Given 1,000 queued jobs whose one wake-up is in the broker (one per queue and type: its
    # taker claims them from the database), and no worker yet
    backend.app.submit_many([SubmitRequest("probe.noop") for _ in range(1000)])
    backend.app.submit_many([SubmitRequest("probe.noop") for _ in range(10)])
    assert backend.app.jobs.waker.flush()  # wake-ups follow a submit on their own thread
    assert queue_depth(backend.app.celery, "default") == 1

    # When the broker loses everything (as Redis restarted without persistence does)
    assert backend.flush_broker() > 0
    assert queue_depth(backend.app.celery, "default") == 0

    # Then, with a scheduler and workers running, all 1,000 succeed
    backend.start_scheduler()
    backend.start_worker(concurrency=2)
    backend.start_worker(concurrency=2)
    wait_for(lambda: states(backend) == {"succeeded": 1010}, 240, "all 1010 to succeed", every=1)


def test_a_job_outliving_the_visibility_timeout_runs_once(backend: Backend) -> None:
    """Invariant 4: a redelivered message finds the job running and claims nothing."""
    # Redis' transport re-delivers a message unacknowledged for a second, checking every second.
    fast_redelivery = '{"visibility_timeout": 1, "unacked_restore_interval": 1, ' \
        '"unacked_restore_throttle": 1}'
    worker = backend.start_worker(concurrency=2, CRISPER_BROKER_TRANSPORT_OPTIONS=fast_redelivery)
    backend.start_scheduler()
    long_job = backend.app.submit("probe.sleep", {"seconds": 8})
    delayed = backend.app.submit("probe.sleep", {"seconds": 0.1}, delay=3)

    long_job.wait(timeout=60)
    delayed.wait(timeout=60)

    assert (long_job.state, delayed.state) == (S.SUCCEEDED, S.SUCCEEDED)
    runs: dict[str, int] = defaultdict(int)
    for row in backend.probe_rows():
        runs[row.job_id] += row.event == "start"
    assert runs == {str(long_job.id): 1, str(delayed.id): 1}
    # The long job's message really was delivered again while it ran, and dropped.
    received = worker.output().count(f"probe.sleep[{long_job.record.task_id}] received")
    assert received >= 2, worker.output()[-2000:]


def test_cancelling_a_job_that_never_checks_kills_it_after_the_grace(backend: Backend) -> None:
    """Invariant 5: cooperative first, then by force; the process running it is terminated."""
    backend.start_worker(concurrency=1)
    backend.start_scheduler()
    job = backend.app.submit("probe.sleep", {"seconds": 120, "check": False})
    start = wait_for(lambda: backend.probe_rows(), 30, "the job to start")[0]

    asked = time.monotonic()
    assert job.cancel().state is S.RUNNING  # asked; it is still running
    job.wait(timeout=30)
    took = time.monotonic() - asked

    assert job.state is S.CANCELLED
    grace = float(backend.env["CRISPER_CANCEL_GRACE_SECONDS"])
    assert grace <= took < grace + 5
    assert [e.reason for e in backend.app.jobs.events(job.id)][-2:] == [
        "cancel_requested", "cancel_forced"]
    wait_for(lambda: not _alive(start.pid), 10, "the job's process to be gone")
    assert [r.event for r in backend.probe_rows()] == ["start"]


def test_a_cooperative_job_stops_at_its_next_check(backend: Backend) -> None:
    backend.start_worker(concurrency=1)
    job = backend.app.submit("probe.sleep", {"seconds": 120})
    wait_for(lambda: backend.probe_rows(), 30, "the job to start")

    asked = time.monotonic()
    job.cancel().wait(timeout=30)

    assert job.state is S.CANCELLED
    assert time.monotonic() - asked < 2.5
    assert [e.reason for e in backend.app.jobs.events(job.id)][-1] == "cancelled"


def test_a_cancelled_queued_job_never_starts_even_after_worker_restarts(backend: Backend) -> None:
    """Invariant 5: the message is still in the broker, but the claim finds nothing."""
    job = backend.app.submit("probe.sleep", {"seconds": 0.1})
    assert job.cancel().state is S.CANCELLED
    assert backend.app.jobs.waker.flush()  # its wake-up follows the submit on a thread
    assert queue_depth(backend.app.celery, "default") == 1

    first = backend.start_worker(concurrency=1)
    wait_for(lambda: queue_depth(backend.app.celery, "default") == 0, 30, "the message to go")
    first.stop()
    backend.start_worker(concurrency=1)
    backend.start_scheduler()
    time.sleep(2)

    assert job.refresh().state is S.CANCELLED
    assert backend.probe_rows() == []


def test_a_cancel_request_survives_the_worker_dying(backend: Backend) -> None:
    """A running job asked to cancel, whose worker then dies, ends cancelled, not retried."""
    worker = backend.start_worker(concurrency=1)
    backend.start_scheduler()
    job = backend.app.submit("probe.sleep", {"seconds": 120, "check": False})
    wait_for(lambda: backend.probe_rows(), 30, "the job to start")
    worker.signal(signal.SIGSTOP)

    # The cancel is asked before the worker dies. It runs on a thread: the worker may have been
    # frozen holding a lock the cancel needs (mid-heartbeat; all of SQLite's, or the job's row),
    # which only its death releases; then the request is written just after the death.
    with ThreadPoolExecutor(1) as asking:
        cancel = asking.submit(job.cancel)
        futures.wait([cancel], timeout=2)
        worker.kill()
        cancel.result(timeout=60)

    job.wait(timeout=30)
    assert job.state is S.CANCELLED
    assert [r.event for r in backend.probe_rows()] == ["start"]


def test_a_stale_worker_cannot_overwrite_the_attempt_that_replaced_it(backend: Backend) -> None:
    """Invariant 2: completion writes are fenced by the lease token."""
    stale = backend.start_worker(concurrency=1)
    backend.start_scheduler()
    job = backend.app.submit("probe.sleep", {"seconds": 5, "check": False})
    wait_for(lambda: backend.probe_rows(), 30, "attempt 1 to start")

    # Given attempt 1 frozen past its lease, and attempt 2 run to completion elsewhere
    backend.freeze(stale)
    backend.start_worker(concurrency=1)
    job.wait(timeout=60)
    assert job.state is S.SUCCEEDED and job.result["attempt"] == 2
    history = backend.app.jobs.events(job.id)

    # When the frozen worker wakes and finishes attempt 1
    stale.signal(signal.SIGCONT)
    wait_for(lambda: any(r.event == "end" and r.attempt == 1 for r in backend.probe_rows()),
             30, "the stale attempt to finish its body")
    time.sleep(1)

    # Then the outcome and the history are those of attempt 2
    assert job.refresh().state is S.SUCCEEDED and job.result["attempt"] == 2
    assert backend.app.jobs.events(job.id) == history
    assert [(e.attempt, e.reason) for e in history if e.from_state == "running"] == [
        (1, "worker_lost"), (2, "succeeded")]


def test_submitting_while_the_broker_is_down_succeeds_and_runs_later(backend: Backend) -> None:
    """Invariant 6: the job is stored; the relay sends it once the broker is back."""
    port = free_port()
    down = f"redis://127.0.0.1:{port}/0"
    app = backend.app_with(broker_url=down, broker_prefix="")

    job = app.submit("probe.noop")
    assert job.state is S.QUEUED
    assert app.jobs.waker.flush()  # the wake-up is tried after submit returns, and fails
    with app.store.read() as session:
        assert session.scalar(select(jobs.c.dispatched_at).where(jobs.c.id == job.id)) is None

    broker = EmbeddedBroker(backend.tmp / "late-broker", port=port)
    broker.start()
    try:
        backend.start_scheduler(CRISPER_BROKER_URL=down, CRISPER_BROKER_PREFIX="")
        backend.start_worker(CRISPER_BROKER_URL=down, CRISPER_BROKER_PREFIX="")
        assert job.wait(timeout=60).state is S.SUCCEEDED
    finally:
        backend.close()
        broker.stop()


def test_a_job_exists_if_and_only_if_the_callers_transaction_commits(backend: Backend) -> None:
    """Invariant 6 (outbox): no row and no message after a rollback; both after a commit."""
    app = backend.app
    with Session(app.store.engine) as session, session.begin():
        rolled_back = app.submit("probe.noop", session=session)
        session.rollback()
    with Session(app.store.engine) as session:
        with session.begin():
            committed = app.submit("probe.noop", session=session)
            assert queue_depth(app.celery, "default") == 0  # nothing sent before the commit
        assert queue_depth(app.celery, "default") == 1

    assert states(backend) == {"queued": 1}
    with pytest.raises(Exception, match="not found"):
        app.jobs.get(rolled_back.id)
    backend.start_worker()
    assert committed.wait(timeout=30).state is S.SUCCEEDED


@pytest.mark.backends("postgres-redis")
def test_a_database_outage_loses_no_job_and_leaves_none_running(backend: Backend) -> None:
    """PostgreSQL drops every connection mid-run and refuses new ones for a while."""
    proxy = CuttableProxy("127.0.0.1", 5432)
    url = backend.env["CRISPER_DATABASE_URL"].replace(":5432/", f":{proxy.port}/")
    try:
        backend.start_worker(concurrency=2, CRISPER_DATABASE_URL=url)
        backend.start_scheduler(CRISPER_DATABASE_URL=url)
        handles = backend.app.submit_many(
            [SubmitRequest("probe.sleep", {"seconds": 0.5}) for _ in range(40)])
        wait_for(lambda: len(backend.probe_rows()) >= 4, 60, "jobs to be running")

        proxy.cut()
        time.sleep(5)
        proxy.restore()

        wait_for(lambda: all_terminal(backend, 40), 180, "all jobs to finish", every=0.5)
        assert states(backend) == {"succeeded": 40}
        assert_no_overlap(backend, attempt_intervals(backend, killed_at=float("inf")))
        assert len(handles) == 40
    finally:
        backend.close()
        proxy.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True




def test_three_schedulers_relay_each_job_to_exactly_one_run(backend: Backend) -> None:
    """Several scheduler copies are safe: row locks split the relay's work, claims do the rest."""
    # Given 300 jobs whose wake-up messages never went out (the broker was down at submit)
    handles = backend.app.submit_many(
        [SubmitRequest("probe.sleep", {"seconds": 0.01}) for _ in range(300)])
    with backend.app.store.transaction() as session:
        session.execute(jobs.update().values(dispatched_at=None))
    backend.flush_broker()

    # When three schedulers relay them at once to two workers
    for _ in range(3):
        backend.start_scheduler()
    backend.start_worker(concurrency=2)
    backend.start_worker(concurrency=2)

    # Then every job succeeds after exactly one attempt, and ran exactly once
    wait_for(lambda: states(backend) == {"succeeded": 300}, 180, "all 300 to succeed", every=0.5)
    starts: dict[str, int] = defaultdict(int)
    for row in backend.probe_rows():
        starts[row.job_id] += row.event == "start"
    assert starts == {str(h.id): 1 for h in handles}
    assert all(h.refresh().record.attempt == 1 for h in handles)
