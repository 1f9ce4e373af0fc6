"""Wake-up markers in band (engine/wakes.py): on a Redis broker, a wake-up's marker is set by
the script that pushes it and deleted by the worker that takes it, with no round trip of its
own, and still no job is left asleep. No scheduler runs in these tests, so no relay re-sends
a wake-up that should have gone out: a job left asleep would stay queued."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, event

from crisper import Crisper
from crisper.engine.dispatch import queue_depth
from crisper.engine.wakes import KEY, Wakes
from crisper.states import JobState as S
from crisper.store.sweeps import Dispatch
from tests.harness import Backend, delete_prefixed, wait_for

pytestmark = pytest.mark.backends("postgres-redis")


def _marker(backend: Backend, queue: str, type_name: str = "probe.noop") -> tuple[redis.Redis,
                                                                                    str]:
    client = redis.Redis.from_url(backend.broker_url())
    prefix = backend.env.get("CRISPER_BROKER_PREFIX", "")
    return client, prefix + KEY.format(queue=queue, type=type_name)


def _lose_messages(backend: Backend, queue: str) -> int:
    """Delete the queue's keys in the broker (its messages, not its marker): how many."""
    prefix = backend.env.get("CRISPER_BROKER_PREFIX", "")
    return delete_prefixed(backend.broker_url(), prefix + queue)


def _app(backend: Backend) -> tuple[Crisper, str]:
    queue = f"mark-{uuid.uuid4().hex[:8]}"
    return backend.app_with(queues=[queue]), queue


def test_a_burst_pushes_one_wake_up_whose_taker_deletes_its_marker(backend: Backend) -> None:
    # Given a Redis broker, where the markers ride the wake-ups
    app, queue = _app(backend)
    assert app.dispatcher.wakes.in_band(app.celery)
    client, marker = _marker(backend, queue)

    # When 20 jobs are submitted in a burst, with no worker running
    jobs_ = [app.submit("probe.noop", queue=queue) for _ in range(20)]
    assert app.jobs.waker.flush()

    # Then one wake-up waits in the broker, and its marker is set, with its time to live
    assert queue_depth(app.celery, queue) == 1
    assert 0 < client.ttl(marker) <= 30
    # And a worker runs them all; once it has taken every wake-up, no marker is left behind
    backend.start_worker(concurrency=2, extra=["-Q", queue])
    for job in jobs_:
        assert job.wait(timeout=60).state is S.SUCCEEDED
    wait_for(lambda: not client.exists(marker) and queue_depth(app.celery, queue) == 0, 10,
             "the last wake-up taken and its marker deleted")
    # And the next job, submitted alone, is woken and runs
    assert app.submit("probe.noop", queue=queue).wait(timeout=30).state is S.SUCCEEDED


def test_no_job_is_left_asleep_by_racing_submits_and_takers(backend: Backend) -> None:
    # Given a worker with two slots on a queue
    app, queue = _app(backend)
    backend.start_worker(concurrency=2, extra=["-Q", queue])
    ids: list[uuid.UUID] = []

    # When two threads submit 150 jobs each, with pauses of 0-8 ms (so some publishes find
    # a wake-up outstanding, some check the marker first, and some race a taker's delete)
    def submit_some(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(150):
            ids.append(app.submit("probe.noop", queue=queue).id)
            threading.Event().wait(rng.choice([0, 0, 0.001, 0.003, 0.008]))

    threads = [threading.Thread(target=submit_some, args=(seed,)) for seed in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    # Then every job runs, though no relay re-sends a wake-up
    assert len(ids) == 300
    for job_id in ids:
        assert app.get(job_id).wait(timeout=60).state is S.SUCCEEDED


def test_a_forced_wake_up_goes_out_though_the_marker_is_set(backend: Backend) -> None:
    # Given a queued job whose wake-up was lost while its marker stayed set
    app, queue = _app(backend)
    job = app.submit("probe.noop", queue=queue)
    assert app.jobs.waker.flush()
    client, marker = _marker(backend, queue)
    assert _lose_messages(backend, queue) == 1 and client.exists(marker)
    assert queue_depth(app.celery, queue) == 0
    dispatch = [Dispatch(job.id, "probe.noop", queue, 0)]

    # When a wake-up is published unforced, nothing goes out (one is outstanding, it seems)
    assert app.dispatcher.publish(dispatch) == []
    assert queue_depth(app.celery, queue) == 0
    # But the relay's forced one goes out, and keeps the marker set
    assert app.dispatcher.publish(dispatch, force=True) == []
    assert queue_depth(app.celery, queue) == 1 and client.exists(marker)

    # Then a worker runs the job, and deletes the marker as it takes the wake-up
    backend.start_worker(concurrency=1, extra=["-Q", queue])
    assert job.wait(timeout=30).state is S.SUCCEEDED
    wait_for(lambda: not client.exists(marker), 10, "the marker deleted")


@pytest.mark.parametrize("busy", [0.0, 3600.0], ids=["in-the-script", "checked-first"])
def test_a_marker_is_checked_in_the_script_or_first_and_either_way_dedupes(
        backend: Backend, busy: float) -> None:
    # Given a process that publishes for the same queue within `busy` seconds (then it
    # checks the marker before building a message) or not (then the script checks it)
    app, queue = _app(backend)
    wakes = Wakes(app.settings.resolved_redis_url, app.settings.broker_prefix,
                  busy_seconds=busy)
    app.dispatcher.wakes = wakes
    client, marker = _marker(backend, queue)

    # When three wake-ups are published for one queue
    for _ in range(3):  # (a wake-up names no job: no rows are needed)
        assert app.dispatcher.publish([Dispatch(uuid.uuid4(), "probe.noop", queue, 0)]) == []

    # Then the first went out with its marker, and the others found it set
    assert queue_depth(app.celery, queue) == 1
    assert client.exists(marker)
    # And the next one would be checked where the test said
    plan = wakes.plan(app.celery, [("probe.noop", queue)])
    if busy:
        assert plan == {}  # checked first: the marker is set, so no message is built
    else:
        assert [w.owned for w in plan.values()] == [False]  # left to the script


def test_a_backlogs_one_wake_up_keeps_every_slot_busy(backend: Backend) -> None:
    # Given six 1-second jobs submitted in a burst, with no worker running: one wake-up
    app, queue = _app(backend)
    jobs_ = [app.submit("probe.sleep", {"seconds": 1.0}, queue=queue) for _ in range(6)]
    assert app.jobs.waker.flush()
    assert queue_depth(app.celery, queue) == 1

    # When a worker with two slots starts
    backend.start_worker(concurrency=2, extra=["-Q", queue])
    done = [job.wait(timeout=60).record for job in jobs_]

    # Then the slot that took the wake-up woke the other (its first claim saw jobs waiting):
    # two jobs ran at a time, on both slots, so six took about three seconds, not six
    assert all(r.state is S.SUCCEEDED for r in done)
    spans = [(r.started_at, r.finished_at) for r in done]
    running = [sum(1 for s, f in spans if s <= start < f) for start, _ in spans]
    assert max(running) == 2, (running, spans)
    assert len({r.worker for r in done}) == 2
    elapsed = max(f for _, f in spans) - min(s for s, _ in spans)
    assert elapsed.total_seconds() < 4.5, spans


def test_a_job_submitted_while_the_waker_gathers_is_woken_though_the_wake_up_was_taken(
        backend: Backend) -> None:
    # Given a process that checks the marker first and, finding it set, gathers for 0.5 s
    app, queue = _app(backend)
    wakes = Wakes(app.settings.resolved_redis_url, app.settings.broker_prefix,
                  busy_seconds=3600.0, gather_seconds=0.5)
    app.dispatcher.wakes = wakes
    client, marker = _marker(backend, queue)
    first = app.submit("probe.noop", queue=queue)
    assert app.jobs.waker.flush()
    assert queue_depth(app.celery, queue) == 1 and client.exists(marker)

    # When a second job finds that wake-up outstanding (so the waker gathers) ...
    second = app.submit("probe.noop", queue=queue)
    assert app.jobs.waker.flush()  # its check is done; the pause follows
    assert wakes.gather_seconds() == 0.5
    # ... and, while it gathers, a taker deletes the marker and takes the message, and a
    # third job is committed
    assert _lose_messages(backend, queue) == 1
    assert client.delete(marker) == 1 and queue_depth(app.celery, queue) == 0
    third = app.submit("probe.noop", queue=queue)

    # Then the third job's check, after the pause, finds no marker and wakes the queue
    assert app.jobs.waker.flush()
    assert queue_depth(app.celery, queue) == 1 and client.exists(marker)
    # And one worker runs all three from that wake-up
    backend.start_worker(concurrency=1, extra=["-Q", queue])
    for job in (first, second, third):
        assert job.wait(timeout=30).state is S.SUCCEEDED


def _before_insert(then: Callable[[], None]) -> Callable[[], None]:
    """Run `then` in the submitting thread just before a job's insert goes to the database;
    answers the function that removes the hook."""
    def hook(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "INSERT INTO crisper_jobs" in statement:
            then()

    event.listen(Engine, "before_cursor_execute", hook)
    return lambda: event.remove(Engine, "before_cursor_execute", hook)


def test_a_submit_alone_wakes_its_queue_while_its_job_commits(backend: Backend) -> None:
    # Given a quiet queue, whose submits' inserts wait until a wake-up is in the broker (or
    # 5 s have passed)
    app, queue = _app(backend)
    client, marker = _marker(backend, queue)
    seen: list[int | None] = []
    unhook = _before_insert(lambda: seen.append(
        wait_for(lambda: queue_depth(app.celery, queue), 5, "the herald", every=0.005)))

    # When a job is submitted alone
    job = app.submit("probe.noop", queue=queue)
    assert app.jobs.waker.flush()
    unhook()

    # Then its wake-up was in the broker before its insert was sent (a herald), and the check
    # after the commit, finding its marker set, sent no second one
    assert seen == [1]
    assert queue_depth(app.celery, queue) == 1 and client.exists(marker)
    # And a worker runs it from that wake-up
    backend.start_worker(concurrency=1, extra=["-Q", queue])
    assert job.wait(timeout=30).state is S.SUCCEEDED


def test_a_herald_taken_before_its_job_commits_is_followed_by_another_wake_up(
        backend: Backend) -> None:
    # Given a quiet queue, and a taker that takes its herald before the job's insert goes out
    # (it deletes the marker and finds no job to claim)
    app, queue = _app(backend)
    client, marker = _marker(backend, queue)

    def take_the_herald() -> None:
        wait_for(lambda: queue_depth(app.celery, queue) == 1, 5, "the herald")
        assert client.delete(marker) == 1 and _lose_messages(backend, queue) == 1

    unhook = _before_insert(take_the_herald)

    # When a job is submitted alone
    job = app.submit("probe.noop", queue=queue)
    assert app.jobs.waker.flush()
    unhook()

    # Then the check after its commit, finding no marker, wakes the queue again
    assert queue_depth(app.celery, queue) == 1 and client.exists(marker)
    # And a worker runs the job from that wake-up
    backend.start_worker(concurrency=1, extra=["-Q", queue])
    assert job.wait(timeout=30).state is S.SUCCEEDED
