"""Jobs through real workers: outcomes, events, retries, timeouts, held and delayed jobs."""

from __future__ import annotations

import uuid

import pytest

from crisper import (
    InvalidParams,
    InvalidTransition,
    JobNotFound,
    JobState,
    SubmitRequest,
    UnknownJobType,
)
from tests.conftest import require
from tests.harness import Backend, wait_for

S = JobState


def reasons(backend: Backend, job_id: object) -> list[tuple[str | None, str, str]]:
    return [(e.from_state, e.to_state, e.reason) for e in backend.app.jobs.events(job_id)]


def test_a_job_runs_and_every_state_change_is_an_event(backend: Backend) -> None:
    backend.start_worker()
    job = backend.app.submit("probe.echo", {"number": 7, "text": "hi"})

    job.wait(timeout=30)

    assert job.state is S.SUCCEEDED
    assert job.result == {"number": 7, "text": "hi"}
    assert reasons(backend, job.id) == [
        (None, "queued", "submitted"),
        ("queued", "running", "claimed"),
        ("running", "succeeded", "succeeded"),
    ]
    assert [line.message for line in backend.app.jobs.logs(job.id)] == ["echo 7 hi"]


def test_an_unknown_id_is_not_found_never_pending(backend: Backend) -> None:
    with pytest.raises(JobNotFound, match="not found"):
        backend.app.jobs.get("01a20000-0000-7000-8000-000000000000")
    with pytest.raises(JobNotFound):
        backend.app.jobs.get("not-a-uuid")


def test_invalid_params_name_the_field_and_unknown_types_name_the_known(backend: Backend) -> None:
    with pytest.raises(InvalidParams) as bad:
        backend.app.submit("probe.echo", {"number": "seven"})
    assert bad.value.errors[0]["loc"] == ["number"]
    assert "number" in str(bad.value)
    with pytest.raises(InvalidParams, match="text"):
        backend.app.submit("probe.echo", {"number": 1, "text": 5, "extra": 1})
    with pytest.raises(UnknownJobType, match="known: .*probe.echo"):
        backend.app.submit("probe.ecko", {})


def test_a_failing_job_retries_with_backoff_then_succeeds(backend: Backend) -> None:
    backend.start_worker()
    backend.start_scheduler()
    job = backend.app.submit("probe.flaky", {"fail_times": 2}).wait(timeout=30)

    assert job.state is S.SUCCEEDED
    assert job.result == 3
    trail = reasons(backend, job.id)
    assert trail.count(("running", "retrying", "error")) == 2
    assert trail.count(("retrying", "queued", "retry_due")) == 2


def test_a_non_retryable_error_fails_at_once_with_its_traceback(backend: Backend) -> None:
    backend.start_worker()
    job = backend.app.submit("probe.fatal").wait(timeout=30)

    assert job.state is S.FAILED
    assert job.record.attempt == 1
    assert job.error is not None and job.error["type"] == "KeyError"
    assert "never retried" in job.error["traceback"]


def test_a_job_over_its_timeout_fails_with_reason_timeout(backend: Backend) -> None:
    backend.start_worker()
    job = backend.app.submit("probe.slow", {"seconds": 10}).wait(timeout=30)

    assert job.state is S.FAILED
    assert ("running", "failed", "timeout") in reasons(backend, job.id)


def test_a_held_job_waits_for_start(backend: Backend) -> None:
    backend.start_worker()
    job = backend.app.submit("probe.noop", hold=True)
    assert job.state is S.HELD

    with pytest.raises(InvalidTransition, match="only held jobs can be started"):
        backend.app.jobs.start(backend.app.submit("probe.noop").wait(timeout=30).id)
    assert job.refresh().state is S.HELD

    job.start().wait(timeout=30)
    assert job.state is S.SUCCEEDED


def test_a_delayed_job_is_a_database_timer(backend: Backend) -> None:
    backend.start_worker()
    backend.start_scheduler()
    job = backend.app.submit("probe.noop", delay=1.5)
    assert job.state is S.SCHEDULED

    job.wait(timeout=30)

    assert job.state is S.SUCCEEDED
    assert job.record.started_at is not None and job.record.run_at is not None
    assert job.record.started_at >= job.record.run_at


def test_a_finished_job_can_be_retried_as_a_new_series(backend: Backend) -> None:
    backend.start_worker()
    job = backend.app.submit("probe.fatal").wait(timeout=30)
    assert job.state is S.FAILED

    job.retry()
    assert job.state is S.QUEUED and job.record.attempt == 0
    job.wait(timeout=30)

    assert job.state is S.FAILED
    assert job.record.attempt == 1
    assert reasons(backend, job.id).count(("failed", "queued", "retried")) == 1


def test_a_retry_with_edited_params_runs_with_them_and_keeps_the_old_ones(
        backend: Backend) -> None:
    # Given a job that ran with its params
    backend.start_worker()
    job = backend.app.submit("probe.echo", {"number": 1, "text": "a"}).wait(timeout=30)
    assert job.result == {"number": 1, "text": "a"}

    # When edited params its type refuses are given, nothing changes
    with pytest.raises(InvalidParams, match="number"):
        backend.app.jobs.retry(job.id, params={"number": "one"})
    assert backend.app.jobs.get(job.id).state is S.SUCCEEDED

    # When it is retried with params its type accepts, it runs with those
    backend.app.jobs.retry(job.id, params={"number": 2})
    job.wait(timeout=30)
    assert job.result == {"number": 2, "text": ""}
    assert backend.app.jobs.get(job.id).params == {"number": 2, "text": ""}
    retried = [e for e in backend.app.jobs.events(job.id) if e.reason == "retried"]
    assert [e.detail for e in retried] == [{"edit": {"before": {"number": 1, "text": "a"},
                                                     "after": {"number": 2, "text": ""}}}]


def test_an_idempotency_key_returns_the_first_job(backend: Backend) -> None:
    first = backend.app.submit("probe.noop", idempotency_key="order-42")
    second = backend.app.submit("probe.noop", idempotency_key="order-42")
    assert second.id == first.id


def test_bulk_submit_creates_all_jobs_in_one_call(backend: Backend) -> None:
    from crisper import SubmitRequest

    backend.start_worker()
    handles = backend.app.submit_many(
        [SubmitRequest("probe.echo", {"number": i}) for i in range(50)])
    assert len({h.id for h in handles}) == 50
    for h in handles:
        h.wait(timeout=60)
    assert sorted(h.result["number"] for h in handles) == list(range(50))


def test_progress_is_stored_and_logs_are_bounded(backend: Backend) -> None:
    backend.start_worker(CRISPER_MAX_LOG_LINES="5")
    job = backend.app.submit("probe.chatty", {"lines": 12, "steps": 4}).wait(timeout=30)

    assert job.state is S.SUCCEEDED
    assert (job.record.progress_current, job.record.progress_total) == (4, 4)
    assert job.record.progress_message == "step 4"
    lines = [line.message for line in backend.app.jobs.logs(job.id)]
    assert lines == [f"line {i}" for i in range(5)] + ["7 more log lines were not kept"]


def test_pruning_deletes_old_finished_jobs_only(backend: Backend) -> None:
    from datetime import timedelta

    from crisper.maintenance.pruner import prune
    from crisper.store import utcnow

    backend.start_worker()
    done = backend.app.submit("probe.noop").wait(timeout=30)
    waiting = backend.app.submit("probe.noop", hold=True)

    later = utcnow() + timedelta(seconds=backend.app.settings.retention_seconds + 1)
    assert prune(backend.app.store, backend.app.settings, backend.app.registry, later) == 1

    with pytest.raises(JobNotFound):
        backend.app.jobs.get(done.id)
    assert backend.app.jobs.get(waiting.id).state is S.HELD


@pytest.mark.backends("postgres-redis")
def test_a_job_runs_through_rabbitmq_too(backend: Backend) -> None:
    """The broker is Celery's: RabbitMQ (amqp://) carries the same wake-up messages."""
    require("rabbitmq")
    amqp = "amqp://guest:guest@127.0.0.1:5672//"
    queue = f"q-{uuid.uuid4().hex[:10]}"  # of this test's own: others may share the server
    app = backend.app_with(broker_url=amqp, broker_prefix="", queues=[queue])
    backend.start_worker(CRISPER_BROKER_URL=amqp, extra=["-Q", queue])
    backend.start_scheduler(CRISPER_BROKER_URL=amqp)

    job = app.submit("probe.echo", {"number": 5}, queue=queue).wait(timeout=60)
    late = app.submit("probe.noop", delay=1, queue=queue).wait(timeout=60)

    assert (job.state, job.result) == (S.SUCCEEDED, {"number": 5, "text": ""})
    assert late.state is S.SUCCEEDED


def test_a_backlog_shares_wake_ups_but_not_outcomes(backend: Backend) -> None:
    """20 jobs submitted together wake the queue once; each slot then claims job after job
    from the database, so a few messages carry them all, each job its own attempt."""
    worker = backend.start_worker(concurrency=2)
    handles = backend.app.submit_many(
        [SubmitRequest("probe.batched", {"seconds": 0.05}) for _ in range(20)])

    for h in handles:
        h.wait(timeout=60)

    assert {h.state for h in handles} == {S.SUCCEEDED}
    assert all(h.record.attempt == 1 for h in handles)
    messages = worker.output().count("Task probe.batched[") // 2  # received + succeeded lines
    assert 1 <= messages <= 4, messages  # the first, one more per slot that woke, a stale one


def test_jobs_waiting_in_their_batch_stay_queued_and_a_cancel_stops_them(
        backend: Backend) -> None:
    backend.start_worker(concurrency=1)
    first, second, third = backend.app.submit_many(
        [SubmitRequest("probe.batched", {"seconds": 2}) for _ in range(3)])
    wait_for(lambda: backend.probe_rows(), 30, "the batch's first job to start")
    assert (second.refresh().state, third.refresh().state) == (S.QUEUED, S.QUEUED)

    third.cancel()

    assert third.refresh().state is S.CANCELLED  # at once: it was only waiting
    assert first.wait(timeout=30).state is second.wait(timeout=30).state is S.SUCCEEDED
    started = {r.job_id for r in backend.probe_rows() if r.event == "start"}
    assert started == {str(first.id), str(second.id)}
    assert [e.reason for e in backend.app.jobs.events(third.id)] == ["submitted", "cancelled"]


def test_slow_jobs_submitted_together_start_side_by_side(backend: Backend) -> None:
    # Given four idle worker processes and four slow jobs submitted together (one wake-up)
    backend.start_worker(concurrency=4)
    handles = backend.app.submit_many(
        [SubmitRequest("probe.batched", {"seconds": 3}) for _ in range(4)])

    for h in handles:
        h.wait(timeout=60)

    # Then each slot that claims one wakes one more, and they run beside the first instead
    # of 3, 6 and 9 s after it; each runs once
    starts = sorted(r.at for r in backend.probe_rows() if r.event == "start")
    assert len(starts) == 4 and starts[-1] - starts[0] < 2.5, starts
    assert {h.refresh().state for h in handles} == {S.SUCCEEDED}
    assert all(h.record.attempt == 1 for h in handles)
