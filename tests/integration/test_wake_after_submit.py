"""A submit returns once its job is committed; its wake-up follows on the waker's thread
(engine/waker.py). It still goes out when the submitting process exits right away."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from crisper.engine.dispatch import queue_depth
from crisper.states import JobState as S
from tests.harness import Backend

pytestmark = pytest.mark.backends("postgres-redis")

SUBMIT_AND_EXIT = textwrap.dedent("""
    from tests.apps import probe
    app = probe.build()
    print(app.submit("probe.sleep", {"seconds": 0}).id, flush=True)
""")


def test_a_process_that_exits_right_after_submit_still_wakes_its_job(backend: Backend) -> None:
    done = subprocess.run([sys.executable, "-c", SUBMIT_AND_EXIT], env=backend.process_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    job = backend.app.jobs.get(done.stdout.strip())
    assert job.state is S.QUEUED
    # No worker runs: the wake-up the exiting process sent waits on the broker.
    assert queue_depth(backend.app.celery, job.queue) == 1

    backend.start_worker(concurrency=1)
    assert backend.app.get(job.id).wait(timeout=30).state is S.SUCCEEDED


def test_jobs_submitted_in_a_burst_share_their_wake_ups(backend: Backend) -> None:
    """Twenty submits in a row with no worker: one wake-up is outstanding, not twenty."""
    app = backend.app
    ids = [app.submit("probe.sleep", {"seconds": 0}).id for _ in range(20)]
    assert app.jobs.waker.flush(10)
    queue = app.jobs.get(ids[0]).queue
    assert queue_depth(app.celery, queue) == 1

    backend.start_worker(concurrency=2)
    for job_id in ids:
        assert app.get(job_id).wait(timeout=30).state is S.SUCCEEDED
