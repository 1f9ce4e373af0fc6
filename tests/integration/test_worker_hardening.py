"""A worker survives what reaches it (any bytes, wrong types, a database that is away), and
losing a worker is not the job's failure (issue 8: findings 2, 3, 4, 5, 8, 11, 12b, 12c)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import datetime
from typing import Any

import pytest
import redis
from sqlalchemy import select, text

from crisper import JobState, SubmitRequest
from crisper.engine.worker import WorkerPresence
from crisper.store import utcnow
from crisper.store.models import jobs, maintenance_runs
from tests.conftest import require
from tests.faults import CuttableProxy
from tests.harness import ROOT, Backend, wait_for
from tests.receiver import receiver

S = JobState


def events(backend: Backend, job_id: object) -> list[tuple[str | None, str, str]]:
    return [(e.from_state, e.to_state, e.reason) for e in backend.app.jobs.events(job_id)]


def column(backend: Backend, job_id: object, name: str) -> object:
    with backend.app.store.read() as session:
        return session.scalar(select(jobs.c[name]).where(jobs.c.id == job_id))


def starts(backend: Backend) -> Counter[str]:
    return Counter(r.job_id for r in backend.probe_rows() if r.event == "start")


def queue_key(backend: Backend, queue: str = "default") -> str:
    return backend.env.get("CRISPER_BROKER_PREFIX", "") + queue


def envelope(body: str, encoding: str = "base64", task: str = "probe.noop") -> bytes:
    """A kombu Redis envelope as a producer would write it, with the given body."""
    return json.dumps({
        "body": body, "content-encoding": "utf-8", "content-type": "application/json",
        "headers": {"lang": "py", "task": task, "id": str(uuid.uuid4())},
        "properties": {"body_encoding": encoding, "delivery_tag": str(uuid.uuid4()),
                       "delivery_info": {"exchange": "", "routing_key": "default"},
                       "priority": 0, "correlation_id": str(uuid.uuid4())},
    }).encode()


# -- finding 2: any bytes on a queue ---------------------------------------------------------

def test_garbage_on_a_queue_is_refused_and_the_worker_keeps_consuming(backend: Backend) -> None:
    # Given a running worker
    worker = backend.start_worker(concurrency=1)
    client = redis.Redis.from_url(backend.broker_url())

    # When garbage, a JSON list, a bad base64 body, non-UTF-8 bytes, a pickle message and a
    # message for an unknown task arrive on its queue
    for item in (b"not json at all", b"[1, 2, 3]", envelope("%%% not base64 %%%"),
                 b"\xff\xfe\x00garbage", b'{"properties": 7}',
                 envelope(base64.b64encode(b"[1, 2]").decode())):  # a body of the wrong shape
        client.lpush(queue_key(backend), item)
    celery = backend.app.celery
    celery.send_task("probe.noop", args=[[str(uuid.uuid4())]], queue="default",
                     serializer="pickle")
    celery.send_task("no.such.task", args=[[str(uuid.uuid4())]], queue="default")
    client.close()

    # Then a job submitted afterwards still runs, and the worker is still up
    job = backend.app.submit("probe.echo", {"number": 7})
    assert job.wait(timeout=60).state is S.SUCCEEDED
    assert worker.popen.poll() is None, worker.output()[-3000:]
    # and each refused item left one clear line naming the queue, its size and why
    out = worker.output()
    refused = [line for line in out.splitlines() if "refused a message on queue" in line]
    assert len(refused) == 6, out[-4000:]
    assert any("not JSON" in line and "bytes" in line for line in refused)
    assert any("a JSON list" in line for line in refused)
    assert any("not valid base64" in line for line in refused)
    assert "no.such.task" in out  # Celery's own refusal of an unknown task
    assert "ContentDisallowed" in out or "pickle" in out


@pytest.mark.backends("postgres-redis")
def test_a_worker_stopped_by_an_error_exits_non_zero(backend: Backend) -> None:
    """A supervisor restarts only a worker whose exit code says it failed.

    (On Redis a broken queue key is retried as a channel error, so that a full disk does not
    stop workers: RabbitMQ's refusal of a queue declaration is the error that stops one.)
    """
    require("rabbitmq")
    amqp = "amqp://guest:guest@127.0.0.1:5672//"
    queue = f"spoiled-{uuid.uuid4().hex[:8]}"  # a queue of this test's own on the shared broker
    app = backend.app_with(broker_url=amqp, broker_prefix="", queues=[queue])
    # Given a queue RabbitMQ holds with other arguments than the worker declares it with
    with app.celery.connection_for_write() as conn:
        conn.default_channel.queue_declare(queue, durable=False, auto_delete=False,
                                           arguments={"x-max-priority": 2})
    try:
        # When a worker consumes it, Celery's worker stops on the broker's refusal
        worker = backend.start_worker(concurrency=1, wait=False, extra=["-Q", queue],
                                      CRISPER_BROKER_URL=amqp, CRISPER_BROKER_PREFIX="",
                                      CRISPER_QUEUES=queue)
        code = worker.popen.wait(60)

        # Then `crisper worker` exits non-zero
        assert code != 0, worker.output()[-3000:]
        assert "PRECONDITION_FAILED" in worker.output()
    finally:
        with app.celery.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)


# -- finding 3: the message does not decide which function runs ------------------------------

def test_a_message_naming_another_type_runs_the_job_with_its_own_function(
        backend: Backend) -> None:
    # Given a queued echo job whose own message is gone
    job = backend.app.submit("probe.echo", {"number": 1})
    backend.flush_broker()

    # When a message names "probe.explode" with the echo job's id
    backend.app.celery.send_task("probe.explode", args=[[str(job.id)]], queue="default")
    backend.start_worker(concurrency=1)

    # Then the message only woke the queue: the job ran its own type's function, once, and
    # explode's error is nowhere
    assert job.wait(timeout=60).state is S.SUCCEEDED
    assert job.result == {"number": 1, "text": ""}
    assert job.record.attempt == 1 and job.record.error is None


# -- finding 11: dropped messages say why ----------------------------------------------------

def test_messages_for_unknown_held_or_finished_jobs_are_logged(backend: Backend) -> None:
    worker = backend.start_worker(concurrency=1)
    done = backend.app.submit("probe.noop")
    assert done.wait(timeout=60).state is S.SUCCEEDED
    held = backend.app.submit("probe.noop", hold=True)
    unknown = uuid.uuid4()

    for job_id in (unknown, held.id, done.id):
        backend.app.celery.send_task("probe.noop", args=[[str(job_id)]], queue="default")
    backend.app.celery.send_task("probe.noop", args=[["not-an-id"]], queue="default")

    wait_for(lambda: "not-an-id" in worker.output(), 30, "the four messages to be handled")
    out = worker.output()
    assert f"message for unknown job {unknown}" in out
    assert f"message for job {held.id} (probe.noop) dropped: the job is held" in out
    assert f"message for job {done.id} (probe.noop) dropped: the job is succeeded" in out
    assert "Traceback" not in out


# -- finding 12c: a claim the database cannot answer is not acknowledged ---------------------

@pytest.mark.backends("postgres-redis")
def test_a_claim_during_a_database_outage_requeues_its_message(backend: Backend) -> None:
    proxy = CuttableProxy("127.0.0.1", 5432)
    url = backend.env["CRISPER_DATABASE_URL"].replace(":5432/", f":{proxy.port}/")
    try:
        # Given a worker whose database is away (and no scheduler to re-send lost messages)
        worker = backend.start_worker(concurrency=1, CRISPER_DATABASE_URL=url)
        proxy.cut()
        # When a job's message reaches it
        job = backend.app.submit("probe.noop")
        wait_for(lambda: "its message is requeued" in worker.output(), 30,
                 f"a failed claim: {events(backend, job.id)}")
        proxy.restore()
        # Then the message comes back and the job runs once the database answers
        assert job.wait(timeout=60).state is S.SUCCEEDED
        assert worker.popen.poll() is None
    finally:
        backend.close()
        proxy.close()


# -- finding 4: losing a worker is not the job's failure -------------------------------------

def test_a_killed_worker_rescues_a_job_without_retries_at_no_attempt(backend: Backend) -> None:
    # Given a job type with no retry option, running
    doomed = backend.start_worker(concurrency=1)
    backend.start_scheduler()
    job = backend.app.submit("probe.plain", {"seconds": 1.5})
    wait_for(lambda: backend.probe_rows(), 30, "the job to start")

    # When its worker is SIGKILLed, and another worker starts
    doomed.kill()
    backend.start_worker(concurrency=1)

    # Then the job is rescued (queued again), runs again and succeeds
    assert job.wait(timeout=60).state is S.SUCCEEDED
    assert ("running", "queued", "worker_lost") in events(backend, job.id)
    assert "failed" not in [to for _, to, _ in events(backend, job.id)]
    assert column(backend, job.id, "rescues") == 1
    assert column(backend, job.id, "returned_attempts") == 1


@pytest.mark.backends("postgres-redis")
def test_a_job_that_keeps_killing_its_workers_is_failed_as_poisoned(backend: Backend) -> None:
    with receiver() as hook:
        # Given a cap of one rescue, and a webhook subscription to poisoned jobs
        backend.app.webhooks.subscribe(hook.url + "/poisoned", ["job.poisoned"], "default")
        backend.start_scheduler(CRISPER_MAX_RESCUES="1", CRISPER_OUTBOUND_ALLOW="127.0.0.1/32")
        job = backend.app.submit("probe.plain", {"seconds": 120, "check": False})

        # When two workers in turn die while running it
        for n in (1, 2):
            worker = backend.start_worker(concurrency=1)
            wait_for(lambda n=n: starts(backend)[str(job.id)] == n, 60, f"attempt {n} to start")
            worker.kill()

        # Then it is failed with its own reason, and not run a third time
        assert job.wait(timeout=60).state is S.FAILED
        assert [r for _, _, r in events(backend, job.id)][-1] == "poisoned"
        assert job.record.error is not None and job.record.error["type"] == "Poisoned"
        backend.start_worker(concurrency=1)
        time.sleep(3)
        assert starts(backend)[str(job.id)] == 2
        # and the subscription heard it once, as job.poisoned, with the failed record
        wait_for(lambda: hook.got, 30, "the job.poisoned delivery")
    assert len(hook.got) == 1 and hook.got[0].path == "/poisoned"
    body = json.loads(hook.got[0].body)
    assert body["event"] == "job.poisoned" and body["data"]["id"] == str(job.id)
    assert body["data"]["state"] == "failed"


@pytest.mark.backends("postgres-redis")
@pytest.mark.parametrize("whole_group", [False, True], ids=["main", "group"])
def test_an_announced_shutdown_is_rescued_at_once_and_not_counted(backend: Backend,
                                                                 whole_group: bool) -> None:
    """SIGTERM to the worker's main process (or its whole process group, as `crisper up` and
    systemd do) starts a drain; a supervisor then SIGKILLs it."""
    long_lease = {"CRISPER_LEASE_SECONDS": "60"}
    backend.start_scheduler(CRISPER_MAX_RESCUES="0", **long_lease)
    worker = backend.start_worker(concurrency=1, **long_lease)
    job = backend.app.submit("probe.plain", {"seconds": 120, "check": False})
    wait_for(lambda: backend.probe_rows(), 30, "the job to start")

    # When the worker is told to stop, and killed once its drain runs out of time
    if whole_group:
        worker.signal(signal.SIGTERM)
    else:
        os.kill(worker.pid, signal.SIGTERM)
    wait_for(lambda: "marked interrupted" in worker.output(), 30, "the job to be marked")
    time.sleep(1)
    worker.kill()
    killed = time.monotonic()

    # Then the job is queued again within seconds (not after its 60 s lease), even with a
    # poison-pill cap of zero, because an announced shutdown does not count
    wait_for(lambda: column(backend, job.id, "state") == "queued", 30, "the rescue")
    assert time.monotonic() - killed < 20
    assert ("running", "queued", "interrupted") in events(backend, job.id)
    assert column(backend, job.id, "rescues") == 0


@pytest.mark.backends("sqlite-embedded")
def test_the_shutdown_announcement_does_not_wait_on_its_own_threads_transaction(
        backend: Backend) -> None:
    """Celery's SIGTERM handler interrupts the worker's main thread anywhere, also inside a
    write transaction (on SQLite: the whole database's write lock). The announcement once
    waited there for the 30 s busy timeout, and `crisper up` took over 30 s to stop."""
    backend.start_worker(concurrency=1)
    job = backend.app.submit("probe.plain", {"seconds": 60, "check": False})
    wait_for(lambda: backend.probe_rows(), 30, "the job to start")
    node = str(column(backend, job.id, "worker")).rsplit(":", 1)[0]
    presence = WorkerPresence(backend.app.store, backend.app.settings)
    presence.name = node  # as on worker_ready, in the worker's main process

    # When the shutdown is announced while this thread is inside a write transaction (called
    # directly: the receivers Celery's signal reaches are per process, and other tests' apps
    # may hold the same dispatch_uid here)
    with backend.app.store.transaction() as session:
        session.execute(text("SELECT 1"))  # begins it: SQLite's write lock is taken
        started = time.monotonic()
        presence._shutting_down(sig="SIGTERM", how="Warm", exitcode=0)
        announced_in = time.monotonic() - started

    # Then the handler returns at once, and the job is marked once the transaction ends
    assert announced_in < 1.0
    wait_for(lambda: column(backend, job.id, "interrupted_at") is not None, 10,
             "the job to be marked interrupted")


# -- finding 5: a database outage longer than the lease --------------------------------------

@pytest.mark.backends("postgres-redis")
def test_outcomes_finished_during_a_long_database_outage_are_kept(backend: Backend) -> None:
    proxy = CuttableProxy("127.0.0.1", 5432)
    url = backend.env["CRISPER_DATABASE_URL"].replace(":5432/", f":{proxy.port}/")
    try:
        # Given four jobs running whose bodies never check, half without a retry option,
        # and a scheduler whose lifeline has seen the database (a lifeline that never saw it
        # cannot tell an outage from lost workers, and rescues at once)
        backend.start_worker(concurrency=4, CRISPER_DATABASE_URL=url)
        started = utcnow()
        backend.start_scheduler(CRISPER_DATABASE_URL=url)
        wait_for(lambda: lifeline_ran_since(backend, started), 60, "the lifeline's first run")
        handles = four_running(backend)

        # When the database is away for three lease periods, while the bodies finish
        proxy.cut()
        time.sleep(3 * float(backend.env["CRISPER_LEASE_SECONDS"]))
        proxy.restore()

        # Then every job is recorded succeeded on its first attempt, and ran once
        assert_each_ran_once(backend, handles)
    finally:
        backend.close()
        proxy.close()


@pytest.mark.backends("postgres-redis")
def test_a_scheduler_started_during_an_outage_rescues_no_job_whose_worker_renews(
        backend: Backend) -> None:
    proxy = CuttableProxy("127.0.0.1", 5432)
    url = backend.env["CRISPER_DATABASE_URL"].replace(":5432/", f":{proxy.port}/")
    lease = float(backend.env["CRISPER_LEASE_SECONDS"])
    try:
        # Given four jobs running whose bodies never check, and no scheduler yet
        backend.start_worker(concurrency=4, CRISPER_DATABASE_URL=url)
        handles = four_running(backend)

        # When the database goes away, and a scheduler starts once their leases have expired
        proxy.cut()
        time.sleep(lease + 1)
        backend.start_scheduler(CRISPER_DATABASE_URL=url)
        time.sleep(2 * lease - 1)
        proxy.restore()

        # Then its lifeline, whose first look failed, took none of them for lost: each job
        # is recorded succeeded on its first attempt, and ran once
        assert_each_ran_once(backend, handles)
    finally:
        backend.close()
        proxy.close()


def four_running(backend: Backend) -> list[Any]:
    """Four jobs whose 3 s bodies never check, half without a retry option, all started."""
    handles = backend.app.submit_many(
        [SubmitRequest(t, {"seconds": 3, "check": False})
         for t in ("probe.sleep", "probe.sleep", "probe.plain", "probe.plain")])
    wait_for(lambda: len(starts(backend)) == 4, 60, "all four to be running")
    return handles


def assert_each_ran_once(backend: Backend, handles: list[Any]) -> None:
    """Each job succeeded on its first attempt, no worker taken for lost, one body start."""
    for h in handles:
        assert h.wait(timeout=90).state is S.SUCCEEDED, events(backend, h.id)
        assert h.record.attempt == 1, events(backend, h.id)
        assert "worker_lost" not in [r for _, _, r in events(backend, h.id)]
    assert starts(backend) == {str(h.id): 1 for h in handles}


def lifeline_ran_since(backend: Backend, since: datetime) -> bool:
    """Whether a scheduler's lifeline has run, and so seen the database, since `since` (its
    run book notes a unit's first run)."""
    with backend.app.store.read() as session:
        last = session.scalar(select(maintenance_runs.c.last_run_at)
                              .where(maintenance_runs.c.unit == "lifeline"))
    return last is not None and last >= since


# -- finding 8: forced stops only where they work --------------------------------------------

@pytest.mark.backends("postgres-redis")
def test_crisper_worker_refuses_a_pool_that_cannot_force_a_stop(backend: Backend) -> None:
    worker = backend.start_worker(concurrency=1, pool="threads", wait=False)
    code = worker.popen.wait(60)
    assert code != 0
    assert "use --pool prefork" in worker.output()


@pytest.mark.backends("postgres-redis")
def test_a_cancel_on_a_threads_worker_is_never_recorded_as_forced(backend: Backend) -> None:
    # Given a worker on the threads pool, started the plain Celery way
    log = (backend.tmp / "celery-threads.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.apps.probe_celery", "worker", "-P",
         "threads", "-c", "1", "-Q", "default", "--without-mingle", "--without-gossip"],
        env=backend.process_env(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        backend.start_scheduler()
        job = backend.app.submit("probe.plain", {"seconds": 8, "check": False})
        wait_for(lambda: backend.probe_rows(), 60, "the job to start")

        # When it is asked to cancel and ignores the request past the grace period
        job.cancel()
        wait_for(lambda: "cancel_not_forcible" in [r for _, _, r in events(backend, job.id)],
                 30, "the canceller to give up forcing")

        # Then the record says why it was not forced, and never claims a forced stop
        assert job.refresh().state is S.RUNNING
        job.wait(timeout=60)
        reasons = [r for _, _, r in events(backend, job.id)]
        assert "cancel_forced" not in reasons
        assert [r.event for r in backend.probe_rows()] == ["start", "end"]  # it really ran on
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


@pytest.mark.backends("postgres-redis")
def test_garbage_on_a_rabbitmq_queue_does_not_stop_the_worker(backend: Backend) -> None:
    """RabbitMQ: Celery's consumer decodes the body itself and refuses what it cannot read."""
    require("rabbitmq")
    amqp = "amqp://guest:guest@127.0.0.1:5672//"
    queue = f"hardening-{uuid.uuid4().hex[:8]}"  # a queue of this test's own on the shared broker
    app = backend.app_with(broker_url=amqp, broker_prefix="", queues=[queue])
    worker = backend.start_worker(concurrency=1, extra=["-Q", queue], CRISPER_BROKER_URL=amqp,
                                  CRISPER_BROKER_PREFIX="", CRISPER_QUEUES=queue)
    try:
        # When garbage bodies, a pickle message and an unknown task arrive on its queue
        with app.celery.connection_for_write() as conn, conn.Producer() as producer:
            for body, ctype, headers in (
                (b"not json", "application/json", {}),
                (b"[1, 2]", "application/json", {"task": "probe.noop", "id": "x"}),
                (b"\xff\xfe", "application/octet-stream", {"task": "probe.noop", "id": "y"}),
            ):
                producer.publish(body, routing_key=queue, content_type=ctype,
                                 content_encoding="binary", headers=headers)
        app.celery.send_task("probe.noop", args=[[str(uuid.uuid4())]], queue=queue,
                             serializer="pickle")
        app.celery.send_task("no.such.task", args=[[]], queue=queue)

        # Then a job sent afterwards still runs on the same worker
        job = app.submit("probe.echo", {"number": 3}, queue=queue)
        assert job.wait(timeout=60).state is S.SUCCEEDED
        assert worker.popen.poll() is None, worker.output()[-3000:]
    finally:
        worker.stop()
        with app.celery.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)



def test_a_slot_whose_job_lost_its_lease_claims_nothing_more_under_that_message(
        backend: Backend) -> None:
    """A slot runs job after job under one wake-up message, and a forced cancel kills the
    process running that message (by its task id). A body that ends just after the canceller
    recorded it, before the kill lands, finds its lease gone: its slot must not start the
    next job, which the kill would strike. Played in-process: the body records its own forced
    cancel, as the canceller would, then returns."""
    from types import SimpleNamespace

    from crisper import Crisper, JobContext
    from crisper.store import attempts as attempt_sql
    from crisper.store import utcnow

    queue = f"race-{uuid.uuid4().hex[:8]}"
    app = Crisper("race", settings=backend.settings.model_copy(update={"queues": [queue]}))

    @app.job(name="race.first", queue=queue)
    def first(ctx: JobContext) -> None:
        with app.store.autocommit() as conn:  # the canceller's record, fenced by the lease
            assert attempt_sql.finish(conn, ctx.job_id, ctx.lease_token, JobState.CANCELLED,
                                      utcnow(), reason="cancel_forced", worker="canceller")

    @app.job(name="race.behind", queue=queue)
    def behind(ctx: JobContext) -> None: ...

    # Given a job whose forced cancel is recorded as it ends, and a job queued behind it
    a = app.submit("race.first")
    b = app.submit("race.behind")
    wake = SimpleNamespace(id="wake-1", hostname="test", delivery_info={"routing_key": queue})

    # When a slot takes the queue's wake-up
    app.runner.run(app.registry.get("race.first"), [], wake)

    # Then the first ended cancelled by force, and the slot left the second queued
    assert a.refresh().state is JobState.CANCELLED
    assert [e.reason for e in app.jobs.events(a.id)][-1] == "cancel_forced"
    assert b.refresh().state is JobState.QUEUED
    # And the next wake-up runs it, once
    app.runner.run(app.registry.get("race.behind"), [], SimpleNamespace(
        id="wake-2", hostname="test", delivery_info={"routing_key": queue}))
    assert (b.refresh().state, b.record.attempt) == (JobState.SUCCEEDED, 1)
    app.store.close()
