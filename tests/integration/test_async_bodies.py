"""`async def` job bodies on real prefork workers: progress, logs, retries, cancel, timeout."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crisper import Crisper, JobState
from tests.apps import asyncjobs
from tests.harness import Backend, wait_for

S = JobState
pytestmark = pytest.mark.backends("postgres-redis")


@pytest.fixture
def app(backend: Backend) -> Iterator[Crisper]:
    """The async test app on this backend, and a worker running it."""
    app = asyncjobs.build(backend.settings)
    backend.start_worker(concurrency=2, CRISPER_APP="tests.apps.asyncjobs")
    yield app
    app.store.close()


def reasons(app: Crisper, job_id: object) -> list[tuple[str | None, str | None, str]]:
    return [(e.from_state, e.to_state, e.reason) for e in app.jobs.events(job_id)]


def test_an_async_job_reports_progress_keeps_logs_and_retries(
        app: Crisper, backend: Backend) -> None:
    backend.start_scheduler(CRISPER_APP="tests.apps.asyncjobs")  # it promotes due retries
    steps = app.submit("async.steps", {"steps": 3})
    flaky = app.submit("async.flaky", {"fail_times": 1})

    steps.wait(timeout=30)
    flaky.wait(timeout=30)

    assert steps.state is S.SUCCEEDED, steps.error
    assert steps.result["steps"] == 3
    assert (steps.record.progress_current, steps.record.progress_total) == (3, 3)
    assert steps.record.progress_message == "step 3"
    assert [line.message for line in app.jobs.logs(steps.id)] == [
        "async step 1", "async step 2", "async step 3"]
    assert flaky.state is S.SUCCEEDED and flaky.result == 2
    assert ("running", "retrying", "error") in reasons(app, flaky.id)


def test_an_async_job_is_cancelled_at_its_next_await_and_times_out(
        app: Crisper, backend: Backend) -> None:
    waiting = app.submit("async.wait", {"seconds": 120})
    slow = app.submit("async.slow", {"seconds": 30})
    wait_for(lambda: any(r.job_id == str(waiting.id) for r in backend.probe_rows()), 30,
             "the waiting job to start")

    waiting.cancel().wait(timeout=30)
    slow.wait(timeout=30)

    # Cancelled cooperatively: the coroutine saw CancelledError at its await (no force).
    assert waiting.state is S.CANCELLED
    assert reasons(app, waiting.id)[-2:] == [(None, None, "cancel_requested"),
                                             ("running", "cancelled", "cancelled")]
    events = [(r.job_id, r.event) for r in backend.probe_rows()]
    assert (str(waiting.id), "task-cancelled") in events
    # The soft time limit reached the coroutine: its finally ran, the attempt is a timeout.
    assert slow.state is S.FAILED
    assert ("running", "failed", "timeout") in reasons(app, slow.id)
    assert slow.error is not None and slow.error["type"] == "SoftTimeLimitExceeded"
    assert (str(slow.id), "end") in events
