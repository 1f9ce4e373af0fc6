"""Dispatch under broker faults: an unpublishable job, a broker that restarts empty under load,
a broker that is down, and a broker state file that cannot be read (issue 8: 1, 6, 7, 12d)."""

from __future__ import annotations

import logging
import multiprocessing
import shutil
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import func, select, update

from crisper import JobState, SubmitRequest
from crisper.dashboard.session import SESSION_COOKIE, new_session
from crisper.embedded import free_port
from crisper.engine.dispatch import queue_depth
from crisper.maintenance import relay
from crisper.settings import EMBEDDED_STATE_FILE
from crisper.store import utcnow
from crisper.store.models import jobs
from crisper.store.sweeps import Dispatch
from tests.api_support import api_server, key
from tests.conftest import require
from tests.faults import CuttableProxy
from tests.harness import Backend, wait_for

S = JobState
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
# A type with a timeout gets one job per message: the order of messages is the order of starts
# (a batched message hands its unstarted jobs back to the end of the queue after its budget).
ONE_PER_MESSAGE = "probe.slow"
POISONED_QUEUE = "_kombu.binding.default"  # on Redis, the key of the "default" queue's binding
RESEND_BOUND = 6.0  # seconds from the broker's return to the last lost job's re-send


@contextmanager
def private_redis(folder: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A Redis server of this test's own, without persistence: a restart forgets everything."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_connect_timeout=1)
    try:
        wait_for(lambda: _pings(client), 15, f"redis-server on port {port}")
        yield proc
    finally:
        client.close()
        proc.kill()
        proc.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def dispatch_columns(backend: Backend, job_id: object) -> tuple[str | None, int]:
    with backend.app.store.read() as session:
        row = session.execute(select(jobs.c.dispatch_error, jobs.c.dispatch_attempts)
                              .where(jobs.c.id == job_id)).one()
    return row.dispatch_error, row.dispatch_attempts


def test_an_unpublishable_job_waits_with_its_error_while_the_others_run(
        backend: Backend) -> None:
    """Finding 1: one job the broker refuses must not stop the relay for everyone else."""
    app = backend.app
    # Given a broker that knows the queue "default" (so that "_kombu.binding.default" is one
    # of its own keys, a set), and a queued job in the table whose queue is that key
    backend.start_worker()
    poisoned = app.submit("probe.noop", hold=True, tenant="acme")
    with app.store.transaction() as session:
        session.execute(update(jobs).where(jobs.c.id == poisoned.id).values(
            state=S.QUEUED.value, queue=POISONED_QUEUE, priority=9, queued_at=utcnow(),
            dispatched_at=None))

    # When delayed jobs come due (only the relay sends them) with a scheduler running
    delayed = [app.submit("probe.noop", delay=0.3, tenant="acme") for _ in range(10)]
    backend.start_scheduler()

    # Then every one of them runs
    for job in delayed:
        assert job.wait(timeout=60).state is S.SUCCEEDED
    # And the refused job stays queued, with the broker's answer, and is tried again later
    wait_for(lambda: dispatch_columns(backend, poisoned.id)[1] >= 2, 30,
             "the refused job to be tried again")
    error, attempts = dispatch_columns(backend, poisoned.id)
    assert error is not None and "WRONGTYPE" in error, error
    assert app.jobs.get(poisoned.id).state is S.QUEUED
    # (with back-off: a try per tick would be ~10 in 2 s; doubling from 0.2 s gives ~4)
    time.sleep(2.0)
    later = dispatch_columns(backend, poisoned.id)[1]
    assert later - attempts <= 4, (attempts, later)

    # And the API and the dashboard say why it waits
    with api_server(app) as root:
        secret = key(app)
        body = httpx.get(f"{root}/v1/jobs/{poisoned.id}",
                         headers={"Authorization": f"Bearer {secret}"}).json()
        page = httpx.get(f"{root}/dashboard/jobs/{poisoned.id}",
                         cookies={SESSION_COOKIE: new_session(secret).encode()})
    assert body["state"] == "queued" and "WRONGTYPE" in body["dispatch_error"], body
    assert page.status_code == 200 and 'data-role="dispatch-error"' in page.text
    assert "WRONGTYPE" in page.text


@pytest.mark.backends("postgres-redis")
def test_jobs_a_restarted_broker_lost_run_before_newer_jobs_under_load(
        backend: Backend, tmp_path: Path) -> None:
    """Finding 6: re-dispatch of lost work does not wait for an idle queue."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    env = {"CRISPER_BROKER_URL": url, "CRISPER_BROKER_PREFIX": ""}
    app = backend.app_with(broker_url=url, broker_prefix="")
    lost_count, load_seconds, load_rate = 100, 6.0, 40.0
    with private_redis(tmp_path / "redis-a", port):
        # Given a scheduler, and 100 queued jobs whose messages are in the broker (no worker)
        scheduler = backend.start_scheduler(**env)
        lost = app.submit_many([SubmitRequest(ONE_PER_MESSAGE, {"seconds": 0.05})
                                for _ in range(lost_count)])
        wait_for(lambda: "scheduler started" in scheduler.output(), 30, "the scheduler")
        time.sleep(2.0)  # a few relay ticks
    # When the broker restarts empty, and new jobs arrive faster than the worker runs them
    back_at = utcnow()  # before the start: the relay may re-send the moment the broker answers
    with private_redis(tmp_path / "redis-b", port):
        newer: list[str] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set() and len(newer) < load_seconds * load_rate:
                newer.append(str(app.submit(ONE_PER_MESSAGE, {"seconds": 0.05}).id))
                stop.wait(1.0 / load_rate)

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        backend.start_worker(concurrency=2, **env)
        loader.join(load_seconds * 3)
        stop.set()

        # Then every job runs
        everyone = [j.id for j in lost] + newer
        wait_for(lambda: _all_succeeded(backend, everyone), 120, "every job to succeed")

    with app.store.read() as session:
        rows = {str(r.id): r for r in session.execute(
            select(jobs.c.id, jobs.c.started_at, jobs.c.created_at, jobs.c.dispatched_at)
            .where(jobs.c.id.in_(everyone)))}
    # ... the lost jobs were sent again soon after the broker's return (not once the queue
    # drained)
    resent_at = max(rows[str(j.id)].dispatched_at for j in lost)
    recover = (resent_at - back_at).total_seconds()
    # ... and every lost job started before any job submitted after that re-send (only the
    # jobs submitted in the moment before the relay noticed the restart are ahead of them)
    last_lost = max(rows[str(j.id)].started_at for j in lost)
    ahead = [n for n in newer if rows[n].started_at < last_lost]
    ahead_late = [n for n in ahead if rows[n].created_at > resent_at]
    print(f"\nbroker restart under load: {lost_count} lost, {len(newer)} newer; lost jobs "
          f"re-sent {recover:.2f} s after the broker was back, all started "
          f"{(last_lost - back_at).total_seconds():.2f} s after; {len(ahead)} newer started "
          f"before the last lost one ({len(ahead_late)} of them submitted after the re-send)")
    lost_ids = {str(j.id) for j in lost}
    order = "".join("L" if i in lost_ids else "N" for i in sorted(
        rows, key=lambda i: rows[i].started_at))
    print(order)  # L: a lost job, N: a newer one, in the order they started
    # (the bound is loose for a loaded machine, where the broker lane's reconnect once took
    # 4.2 s; waiting for the drain would take far longer, checked against the drain itself)
    drained = (max(r.started_at for r in rows.values()) - back_at).total_seconds()
    assert 0 <= recover <= min(RESEND_BOUND, drained / 2), (recover, drained)
    # (a few may swap places: two pool processes, each with a message reserved)
    assert len(ahead_late) <= 4, (len(ahead), len(ahead_late))


def _all_succeeded(backend: Backend, ids: list[object]) -> bool:
    with backend.app.store.read() as session:
        states = list(session.scalars(select(jobs.c.state).where(jobs.c.id.in_(ids))))
    return len(states) == len(ids) and all(s == S.SUCCEEDED.value for s in states)


@pytest.mark.backends("postgres-redis")
def test_with_the_broker_down_a_submit_takes_milliseconds_and_warns_once(
        backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    """Finding 7: a broker outage must not block submitters."""
    # Given a broker that is down (nothing listens on its port)
    down = f"redis://127.0.0.1:{free_port()}/0"
    app = backend.app_with(broker_url=down, broker_prefix="")
    app.submit("probe.noop")  # the first submit learns that the broker is down

    # When 100 jobs are submitted one by one
    caplog.set_level(logging.INFO)
    latencies: list[float] = []
    deadline = time.monotonic() + 30
    while len(latencies) < 100 and time.monotonic() < deadline:
        started = time.perf_counter()
        job = app.submit("probe.noop")
        latencies.append(time.perf_counter() - started)
        assert job.state is S.QUEUED

    # Then each returned within milliseconds, its job stored for the relay to send later
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    p95, p99 = cuts[94], cuts[98]
    print(f"\nsubmit with the broker down: {len(latencies)} submits, median "
          f"{statistics.median(latencies) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, "
          f"p99 {p99 * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")
    assert len(latencies) == 100
    # (p95, not p99: on a shared, loaded machine one commit in a hundred may stall; what
    # matters is that no submit waits for the broker, which took 6 s a submit before)
    assert p95 < 0.05 and max(latencies) < 1.0, (p95, max(latencies))
    with app.store.read() as session:
        waiting = session.scalar(select(func.count()).where(jobs.c.dispatched_at.is_(None)))
    assert waiting == 101
    # And the log says so once, not once per submit
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING
                and "broker" in r.getMessage()]
    assert len(warnings) <= 1, [r.getMessage() for r in warnings]

    # And over HTTP, submits keep their pace too
    with api_server(app) as root, httpx.Client(base_url=root, headers={
            "Authorization": f"Bearer {key(app)}"}) as client:
        http: list[float] = []
        deadline = time.monotonic() + 30
        while len(http) < 50 and time.monotonic() < deadline:
            started = time.perf_counter()
            answer = client.post("/v1/jobs", json={"type": "probe.noop"})
            http.append(time.perf_counter() - started)
            assert answer.status_code == 202, answer.text
    print(f"HTTP submit with the broker down: {len(http)} submits, median "
          f"{statistics.median(http) * 1000:.1f} ms ({len(http) / sum(http):.0f}/s)")
    assert len(http) == 50 and statistics.median(http) < 0.1  # it was 6 s


@pytest.mark.backends("postgres-redis")
def test_with_the_broker_down_the_scheduler_keeps_its_pace(backend: Backend) -> None:
    """Finding 7: relay and redispatch must not slow the lifeline, timers, canceller, cron."""
    down = f"redis://127.0.0.1:{free_port()}/0"
    app = backend.app_with(broker_url=down, broker_prefix="")
    # Given a scheduler whose broker is down, and jobs due one after another over 4 s
    scheduler = backend.start_scheduler(CRISPER_BROKER_URL=down, CRISPER_BROKER_PREFIX="")
    wait_for(lambda: "scheduler started" in scheduler.output(), 30, "the scheduler")
    time.sleep(1.0)
    start = utcnow() + timedelta(seconds=1)
    due = [app.submit("probe.noop", run_at=start + timedelta(seconds=0.2 * i))
           for i in range(20)]

    # When they come due, Then each is promoted within about a tick of its time
    wait_for(lambda: all(j.refresh().state is S.QUEUED for j in due), 60,
             "every due job to be promoted")
    with app.store.read() as session:
        lags = [(r.queued_at - r.run_at).total_seconds() for r in session.execute(
            select(jobs.c.run_at, jobs.c.queued_at).where(jobs.c.id.in_([j.id for j in due])))]
    print(f"\ntimers with the broker down: max lag {max(lags):.2f} s (tick "
          f"{backend.settings.tick_seconds} s)")
    assert max(lags) < 1.5, lags
    # And the outage is one warning per broker unit, not one per tick
    log = scheduler.output()
    assert log.count("relay: the broker is unavailable") == 1, log[-3000:]


def test_a_submit_never_fails_after_its_job_is_committed(backend: Backend) -> None:
    """Finding 12d: an unreadable broker state file (a truncated embedded.json) after commit."""
    # Given no broker URL and a truncated state file of the embedded broker
    home = backend.tmp / "home"
    home.mkdir()
    (home / EMBEDDED_STATE_FILE).write_text('{"url": "redis://127.0')
    app = backend.app_with(broker_url=None, home=home)

    # When a job is submitted, alone and in a batch
    one = app.submit("probe.noop")
    many = app.submit_many([SubmitRequest("probe.noop") for _ in range(3)])

    # Then each submit returns its committed job, left for the relay to send (once the
    # wake-ups, tried after the submits returned, found no broker)
    assert app.jobs.waker.flush()
    for job in [one, *many]:
        assert job.state is S.QUEUED
        with app.store.read() as session:
            assert session.execute(select(jobs.c.dispatched_at).where(jobs.c.id == job.id)
                                   ).one().dispatched_at is None


@pytest.mark.backends("postgres-redis")
def test_on_rabbitmq_a_refused_queue_name_stops_only_its_own_jobs(backend: Backend) -> None:
    """Finding 1 on RabbitMQ: a reserved queue name (amq.*) is refused with a channel error."""
    require("rabbitmq")
    queue = f"relay-test-{uuid.uuid4().hex[:8]}"  # declared below, as a submit needs
    app = backend.app_with(broker_url=RABBITMQ, broker_prefix="", queues=[queue])
    # Given a queued job on a queue RabbitMQ refuses, ahead of others that have no message out
    refused = app.submit(ONE_PER_MESSAGE, hold=True)
    others = [app.submit(ONE_PER_MESSAGE, hold=True, queue=queue, priority=p) for p in (0, 5, 0)]
    with app.store.transaction() as session:
        session.execute(update(jobs).where(jobs.c.id == refused.id).values(
            state=S.QUEUED.value, queue="amq.crisper-test", priority=9, queued_at=utcnow()))
        session.execute(update(jobs).where(jobs.c.id.in_([j.id for j in others])).values(
            state=S.QUEUED.value, queued_at=utcnow()))
    try:
        # When the relay runs
        sent = relay.Relay(app.store, app.dispatcher, app.settings).send_undispatched(utcnow())

        # Then the others are sent, and the refused job waits with RabbitMQ's answer
        assert sent == 4
        with app.store.read() as session:
            rows = {r.id: r for r in session.execute(select(
                jobs.c.id, jobs.c.dispatched_at, jobs.c.dispatch_error))}
        assert all(rows[j.id].dispatched_at is not None for j in others)
        assert rows[refused.id].dispatched_at is None
        assert "ACCESS_REFUSED" in (rows[refused.id].dispatch_error or "")
        assert queue_depth(app.celery, queue) == 1  # one wake-up for the queue's three jobs
    finally:
        with app.celery.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
            conn.default_channel.exchange_delete(queue)


@pytest.mark.backends("postgres-redis")
@pytest.mark.parametrize("death", ["a forked child", "the network"])
def test_on_rabbitmq_a_dead_pooled_connection_costs_a_reconnect_not_an_outage(
        backend: Backend, death: str, caplog: pytest.LogCaptureFixture) -> None:
    """A pooled AMQP connection can die unseen: after a multiprocessing fork, kombu's pools
    shut the sockets the child inherited, which are the parent's too; a middlebox or a
    broker restart drops them. A wake-up on it once met 'Connection reset by peer' and
    reported the broker down."""
    require("rabbitmq")
    proxy = CuttableProxy("127.0.0.1", 5672) if death == "the network" else None
    port = proxy.port if proxy else 5672
    queue = f"relay-test-{uuid.uuid4().hex[:8]}"
    app = backend.app_with(broker_url=f"amqp://guest:guest@127.0.0.1:{port}//",
                           broker_prefix="", queues=[queue])
    wake_up = [Dispatch(id=uuid.uuid4(), type="probe.noop", queue=queue, priority=0)]
    try:
        # Given a wake-up that left its connection in the pool
        assert app.dispatcher.publish(wake_up, force=True) == []
        wait_for(lambda: queue_depth(app.celery, queue) == 1, 10, "the first wake-up")

        # When that connection dies unseen
        if proxy is None:
            child = multiprocessing.get_context("fork").Process(target=int)
            child.start()
            child.join(10)
        else:
            proxy.cut()
            proxy.restore()

        # Then the next wake-up goes out on a new connection, the broker not reported down
        with caplog.at_level(logging.INFO, logger="crisper.engine.dispatch"):
            assert app.dispatcher.publish(wake_up, force=True) == []
        assert "a pooled broker connection was dead" in caplog.text
        wait_for(lambda: queue_depth(app.celery, queue) == 2, 10, "the second wake-up")
    finally:
        with app.celery.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
            conn.default_channel.exchange_delete(queue)
        if proxy is not None:
            proxy.close()
