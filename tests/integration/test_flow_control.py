"""Flow control through real workers: unique jobs, concurrency per key, pause, priorities."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from crisper import Crisper, DuplicateJob, JobState, SubmitRequest
from crisper.engine.dispatch import queue_depth
from crisper.store.models import jobs
from tests.apps import flow, probe
from tests.harness import Backend, wait_for

S = JobState
FLOW_APP = {"CRISPER_APP": "tests.apps.flow"}


@pytest.fixture
def app(backend: Backend) -> Iterator[Crisper]:
    crisper = flow.build(backend.settings)
    yield crisper
    crisper.store.close()


def states(app: Crisper, ids: list[object]) -> list[S]:
    return [app.jobs.get(i).state for i in ids]


# -- unique jobs --------------------------------------------------------------------------

def test_unique_jobs_are_race_free_under_many_concurrent_submits(backend: Backend,
                                                                 app: Crisper) -> None:
    # Given 16 threads ready to submit the same unique key at the same instant
    barrier = threading.Barrier(16)
    got: list[str] = []
    errors: list[BaseException] = []

    def submit(i: int) -> None:
        try:
            barrier.wait()
            got.append(str(app.submit("flow.unique", {"key": "k1", "other": i}).id))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(16)]
    # When they all submit
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    # Then every caller got the one active job, and only one row exists
    assert not errors
    assert len(got) == 16 and len(set(got)) == 1
    with app.store.read() as session:
        count = len(list(session.execute(select(jobs.c.id).where(jobs.c.type == "flow.unique"))))
    assert count == 1


def test_unique_reject_is_the_callers_choice_and_the_key_frees_when_the_job_ends(
        backend: Backend, app: Crisper) -> None:
    first = app.submit("flow.unique", {"key": "a"})
    # A second submit asking to reject gets DuplicateJob naming the active job
    with pytest.raises(DuplicateJob) as dup:
        app.submit("flow.unique", {"key": "a"}, on_duplicate="reject")
    assert dup.value.existing == str(first.id)
    # A different key is a different job; a given unique_key works on any type
    assert app.submit("flow.unique", {"key": "b"}).id != first.id
    x = app.submit("flow.sleep", {"seconds": 0}, unique_key="nightly")
    assert app.submit("flow.sleep", {"seconds": 0.1}, unique_key="nightly").id == x.id
    # Within one batch, the repeat is answered with the batch's own job
    batch = app.submit_many([SubmitRequest("flow.unique", {"key": "c"}),
                             SubmitRequest("flow.unique", {"key": "c", "other": 2})])
    assert batch[0].id == batch[1].id

    # Once the job has finished, the key admits a new job
    backend.start_worker(**FLOW_APP)
    first.wait(timeout=30)
    second = app.submit("flow.unique", {"key": "a"}, hold=True)
    assert second.id != first.id
    # ... and a retry of the finished one is refused while that new job holds the key
    with pytest.raises(DuplicateJob) as dup:
        app.jobs.retry(first.id)
    assert dup.value.existing == str(second.id) and "retry this one" in str(dup.value)
    assert app.jobs.get(first.id).state is JobState.SUCCEEDED


# -- concurrency --------------------------------------------------------------------------

def _intervals(backend: Backend) -> dict[str, tuple[float, float]]:
    spans: dict[str, list[float]] = {}
    for row in backend.probe_rows():
        spans.setdefault(row.job_id, []).append(row.at)
    return {k: (min(v), max(v)) for k, v in spans.items()}


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


@pytest.mark.backends("postgres-redis")
def test_concurrency_limit_per_key_holds_across_workers_and_spends_no_attempt(
        backend: Backend, app: Crisper) -> None:
    # Given two workers with room for 6 jobs at once, and 3 campaigns for each of 2 customers
    backend.start_scheduler()
    backend.start_worker(concurrency=3, **FLOW_APP)
    backend.start_worker(concurrency=3, **FLOW_APP)
    ids = {c: [app.submit("flow.campaign", {"customer": c, "seconds": 1.0}).id for _ in range(3)]
           for c in ("acme", "globex")}

    # When they all run
    for group in ids.values():
        for job_id in group:
            app.get(job_id).wait(timeout=90)

    # Then no two campaigns of one customer overlapped, while the customers ran side by side
    spans = _intervals(backend)
    for group in ids.values():
        own = [spans[str(i)] for i in group]
        assert not any(_overlap(a, b) for i, a in enumerate(own) for b in own[i + 1:])
    assert any(_overlap(spans[str(a)], spans[str(b)]) for a in ids["acme"] for b in ids["globex"])
    # And every job succeeded on its first attempt (waiting spent none); the waits are events
    for group in ids.values():
        for job_id in group:
            job = app.jobs.get(job_id)
            assert (job.state, job.attempt) == (S.SUCCEEDED, 1)
    reasons = [e.reason for g in ids.values() for i in g for e in app.jobs.events(i)]
    assert "concurrency_limited" in reasons


@pytest.mark.backends("postgres-redis")
def test_a_global_concurrency_limit_admits_n_at_once(backend: Backend, app: Crisper) -> None:
    backend.start_scheduler()
    backend.start_worker(concurrency=4, **FLOW_APP)
    ids = [app.submit("flow.import", {"seconds": 0.8}).id for _ in range(6)]
    for job_id in ids:
        app.get(job_id).wait(timeout=90)
    spans = list(_intervals(backend).values())
    # At every start, at most 2 imports were running (itself included)
    for start, _ in spans:
        assert sum(1 for s in spans if s[0] <= start < s[1]) <= 2


# -- pause --------------------------------------------------------------------------------

def test_pause_holds_dispatch_survives_a_scheduler_restart_and_running_jobs_finish(
        backend: Backend, app: Crisper) -> None:
    scheduler = backend.start_scheduler()
    backend.start_worker(concurrency=2, **FLOW_APP)
    # Given a job running on queue "default"
    running = app.submit("flow.sleep", {"seconds": 2.0})
    wait_for(lambda: app.jobs.get(running.id).state is S.RUNNING, 30, "the job to start")

    # When the queue is paused and more jobs are submitted
    assert app.queues.pause("default").paused
    waiting = [app.submit("flow.sleep", {"seconds": 0}).id for _ in range(3)]

    # Then the running job finishes, and the new ones stay queued, across a scheduler restart
    assert running.wait(timeout=30).state is S.SUCCEEDED
    scheduler.stop()
    backend.start_scheduler()
    wait_for(lambda: app.jobs.get(waiting[0]).state is S.QUEUED, 5, "the job to be queued")
    waiting_done = threading.Event()
    threading.Timer(4.0, waiting_done.set).start()
    waiting_done.wait()
    assert states(app, waiting) == [S.QUEUED] * 3
    assert [q.paused for q in app.queues.list_queues() if q.name == "default"] == [True]

    # When it is resumed, they run
    app.queues.resume("default")
    for job_id in waiting:
        assert app.get(job_id).wait(timeout=30).state is S.SUCCEEDED


# -- priorities ---------------------------------------------------------------------------

def _priority_order(backend: Backend, crisper: Crisper, queue: str, **env: str) -> list[int]:
    """Fill `queue` with no worker running, then let one single-slot worker drain it."""
    rng = random.Random(5)
    priorities = [rng.choice([0, 3, 9, 10, 11, 200, 255]) for _ in range(24)]  # exact past 9
    submitted = [crisper.submit("probe.sleep", {"seconds": 0.05}, queue=queue, priority=p)
                 for p in priorities]
    backend.start_worker(concurrency=1, extra=["-Q", queue], **env)
    for job in submitted:
        job.wait(timeout=60)
    with crisper.store.read() as session:
        rows = session.execute(select(jobs.c.priority).where(jobs.c.queue == queue)
                               .order_by(jobs.c.started_at)).all()
    return [r.priority for r in rows]


@pytest.mark.backends("postgres-redis")
def test_single_submits_share_one_outstanding_wake_up_per_queue(backend: Backend) -> None:
    # Given no worker, when 50 jobs are submitted one by one to a fresh queue
    queue = f"wake-{uuid.uuid4().hex[:8]}"
    crisper = backend.app_with(queues=[queue])
    jobs_ = [crisper.submit("probe.noop", queue=queue) for _ in range(50)]

    # Then one wake-up waits in the broker for all of them (its taker claims them)
    assert crisper.jobs.waker.flush()
    assert queue_depth(crisper.celery, queue) == 1
    # And a single-slot worker runs them all, in submission order
    backend.start_worker(concurrency=1, extra=["-Q", queue])
    for job in jobs_:
        assert job.wait(timeout=60).state is S.SUCCEEDED
    with crisper.store.read() as session:
        started = session.scalars(select(jobs.c.id).where(jobs.c.queue == queue)
                                  .order_by(jobs.c.started_at)).all()
    assert started == [j.id for j in jobs_]


@pytest.mark.backends("postgres-redis")
def test_higher_priority_runs_first_on_redis(backend: Backend) -> None:
    queue = f"prio-{uuid.uuid4().hex[:8]}"
    order = _priority_order(backend, backend.app_with(queues=[queue]), queue)
    assert order == sorted(order, reverse=True)


@pytest.mark.backends("postgres-redis")
def test_higher_priority_runs_first_on_rabbitmq(backend: Backend) -> None:
    from tests.conftest import require

    require("rabbitmq")
    amqp = "amqp://guest:guest@127.0.0.1:5672//"
    queue = f"prio-{uuid.uuid4().hex[:8]}"
    crisper = probe.build(backend.settings.model_copy(update={"broker_url": amqp,
                                                              "queues": [queue]}))
    try:
        order = _priority_order(backend, crisper, queue, CRISPER_BROKER_URL=amqp)
        assert order == sorted(order, reverse=True)
    finally:
        for proc in backend.procs:
            proc.stop()
        with crisper.celery.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
        crisper.store.close()
