"""Observe mode: plain Celery tasks of a wrapped app, run by `celery -A` workers, recorded."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from crisper import Crisper
from crisper.dashboard.session import SESSION_COOKIE, new_session
from crisper.errors import NotControlled
from crisper.records import JobRecord
from crisper.states import JobState
from tests.api_support import api_server, key
from tests.apps.observed_tasks import build
from tests.harness import ROOT, Backend, Proc, wait_for

pytestmark = pytest.mark.backends("postgres-redis")
S = JobState


class CeleryProc(Proc):
    """`celery -A tests.apps.observed_celery worker …`, the team's own command line."""

    def __init__(self, backend: Backend, name: str, **env: str) -> None:
        self.log_path = backend.tmp / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.apps.observed_celery", "worker",
             "-Q", "obs", "-c", "2", "-n", name, "--without-mingle", "--without-gossip",
             "--loglevel", "INFO"],
            env=backend.process_env(**env), cwd=ROOT, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True)


def celery_worker(backend: Backend, **env: str) -> CeleryProc:
    name = f"obs-{uuid.uuid4().hex[:6]}@test"
    proc = CeleryProc(backend, name, **env)
    backend.procs.append(proc)
    wait_for(lambda: _ready(proc), 60, f"celery worker {name} to start")
    return proc


def _ready(proc: CeleryProc) -> bool:
    if proc.popen.poll() is not None:
        raise AssertionError(f"worker exited:\n{proc.output()[-3000:]}")
    return "ready." in proc.output()


@pytest.fixture
def observed(backend: Backend) -> Iterator[tuple[Any, Crisper]]:
    """The test process's own copy of the wrapped app (it publishes, and observes that)."""
    app, crisper = build(backend.settings)
    try:
        yield app, crisper
    finally:
        crisper.observer.disconnect()
        crisper.store.close()


def record_of(crisper: Crisper, task_id: str) -> JobRecord | None:
    page = crisper.list_jobs(limit=500)
    return next((r for r in page.items if r.task_id == task_id), None)


def settled(crisper: Crisper, task_id: str, *states: JobState, timeout: float = 60
            ) -> JobRecord:
    def found() -> JobRecord | None:
        r = record_of(crisper, task_id)
        return r if r is not None and r.state in states else None
    return wait_for(found, timeout, f"task {task_id} to be {states}", every=0.3)


def test_success_failure_and_retry_are_recorded_and_listed(
        backend: Backend, observed: tuple[Any, Crisper]) -> None:
    """Given a wrapped app and a plain `celery -A` worker,
    when its tasks succeed, fail and retry, then each is one observed job with its story."""
    app, crisper = observed
    celery_worker(backend)
    ok = app.tasks["obs.add"].delay(2, 3)
    bad = app.tasks["obs.boom"].delay("no luck")
    flaky = app.tasks["obs.flaky"].apply_async(args=["tok"])

    done = settled(crisper, ok.id, S.SUCCEEDED)
    assert (done.source, done.type, done.queue, done.result) == ("observed", "obs.add", "obs", 5)
    assert done.params == {"args": [2, 3], "kwargs": {}}
    assert done.worker and done.worker.startswith("obs-")
    assert done.created_at <= done.started_at <= done.finished_at  # type: ignore[operator]

    failed = settled(crisper, bad.id, S.FAILED)
    assert failed.error is not None and failed.error["type"] == "ValueError"
    assert failed.error["message"] == "no luck"
    assert "ValueError: no luck" in failed.error["traceback"]

    retried = settled(crisper, flaky.id, S.SUCCEEDED)
    assert (retried.attempt, retried.max_attempts) == (2, 4)
    assert retried.result == "tok after 1 retry"
    assert retried.error is not None and "first try of tok fails" in retried.error["message"]

    # The same list, filters and pagination as Crisper's own jobs: one row per task.
    ours = crisper.list_jobs(type=["obs.add", "obs.boom", "obs.flaky"]).items
    assert sorted(r.task_id or "" for r in ours) == sorted([ok.id, bad.id, flaky.id])
    assert [r.id for r in ours] == sorted((r.id for r in ours), reverse=True)
    assert crisper.count_jobs(type="obs.boom")[S.FAILED] == 1

    listed = subprocess.run(
        [sys.executable, "-m", "crisper", "--app", "tests.apps.observed_celery", "jobs", "ls"],
        env=backend.process_env(COLUMNS="200"), cwd=ROOT, capture_output=True, text=True,
        timeout=60)
    assert "obs.add (observed)" in listed.stdout, listed.stdout + listed.stderr

    with api_server(crisper) as url:
        answer = httpx.get(f"{url}/v1/jobs", params={"type": "obs.add"},
                           headers={"Authorization": f"Bearer {key(crisper, 'default')}"})
    item = answer.json()["items"][0]
    assert (item["source"], item["task_id"], item["state"]) == ("observed", ok.id, "succeeded")
    assert "revoke" in item["notice"]


def test_cancel_is_celerys_revoke_and_says_so(backend: Backend,
                                               observed: tuple[Any, Crisper]) -> None:
    """Given a running observed task, when it is cancelled through Crisper,
    then Celery's revoke terminates it and the record ends cancelled (Revoked)."""
    app, crisper = observed
    celery_worker(backend)
    mark = backend.tmp / "sleepy.pid"
    run = app.tasks["obs.sleepy"].delay(60, str(mark))
    record = settled(crisper, run.id, S.RUNNING)
    wait_for(mark.exists, 30, "the task to start")

    with pytest.raises(NotControlled, match="revoke"):
        crisper.jobs.retry(record.id)
    with api_server(crisper) as root:
        cookies = {SESSION_COOKIE: new_session(key(crisper, "default")).encode()}
        page = httpx.get(f"{root}/dashboard/jobs/{record.id}", cookies=cookies).text
        listing = httpx.get(f"{root}/dashboard/jobs", cookies=cookies).text
    assert 'data-role="observed"' in page and "Celery's revoke" in page
    assert 'data-action="cancel"' in page and 'data-action="retry"' not in page
    assert ">observed</span>" in listing
    asked = crisper.jobs.cancel(record.id)
    assert asked.cancel_requested_at is not None and asked.source == "observed"

    ended = settled(crisper, run.id, S.CANCELLED, timeout=60)
    assert ended.error is not None and ended.error["type"] == "Revoked"
    assert "terminated" in ended.error["message"]


def test_a_killed_workers_running_task_is_marked_lost(backend: Backend,
                                                      observed: tuple[Any, Crisper]) -> None:
    """Given an observed task running on a worker that is SIGKILLed (children too),
    when another observing worker sees its heartbeat stop, then the task ends failed, lost."""
    app, crisper = observed
    doomed = celery_worker(backend)
    mark = backend.tmp / "doomed.pid"
    run = app.tasks["obs.sleepy"].delay(120, str(mark))
    settled(crisper, run.id, S.RUNNING)
    wait_for(mark.exists, 30, "the task to start")
    doomed.signal(signal.SIGKILL)
    doomed.popen.wait(10)

    celery_worker(backend, CRISPER_WORKER_LOST_AFTER_SECONDS="3")
    lost = settled(crisper, run.id, S.FAILED, timeout=90)
    assert lost.error is not None and lost.error["type"] == "WorkerLost"
    assert lost.finished_at is not None


def test_observe_can_be_switched_off(backend: Backend) -> None:
    """Given CRISPER_OBSERVE=false in the worker and the caller,
    when tasks run, then they run as before and nothing is recorded."""
    app, crisper = build(backend.settings.model_copy(update={"observe": False}))
    try:
        celery_worker(backend, CRISPER_OBSERVE="false")
        marks = [backend.tmp / f"off{i}" for i in range(3)]
        for m in marks:
            app.tasks["obs.stamp"].delay(str(m))
        wait_for(lambda: all(m.exists() for m in marks), 60, "the tasks to run")
        time.sleep(3 * backend.settings.observe_flush_seconds)  # an observer would have written
        assert "observer" not in crisper.__dict__
        assert crisper.list_jobs().items == []
    finally:
        crisper.store.close()


def test_a_task_waiting_in_a_worker_is_recorded_there_and_revoked_before_it_starts(
        backend: Backend, observed: tuple[Any, Crisper]) -> None:
    """Given a task with a countdown, held by the worker, when it is cancelled through
    Crisper, then it was recorded queued on that worker, and ends cancelled without running."""
    app, crisper = observed
    celery_worker(backend)
    mark = backend.tmp / "never.pid"
    later = app.tasks["obs.sleepy"].apply_async(args=[0, str(mark)], countdown=6)
    waiting = wait_for(lambda: (r := record_of(crisper, later.id)) is not None
                       and r.worker is not None and r, 30, "the held task on its worker")
    assert waiting.state is S.QUEUED and waiting.run_at is not None
    crisper.jobs.cancel(waiting.id)
    ended = settled(crisper, later.id, S.CANCELLED, timeout=60)
    assert ended.error is not None and "before it started" in ended.error["message"]
    assert not mark.exists()
