"""crisper.testing: jobs run in the test's process, with the worker's own records, no broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from crisper import Crisper, InvalidParams, JobState
from crisper.testing import run_inline
from tests.apps import inline
from tests.harness import Backend

S = JobState


@pytest.fixture
def app(backend: Backend) -> Iterator[Crisper]:
    """The inline test app on this backend's database; its broker is never used."""
    app = inline.build(backend.settings.model_copy(update={"broker_url": "redis://127.0.0.1:1"}))
    yield app
    app.store.close()


def reasons(app: Crisper, job_id: object) -> list[tuple[str | None, str, str]]:
    return [(e.from_state, e.to_state, e.reason) for e in app.jobs.events(job_id)]


def test_a_submitted_job_has_run_when_submit_returns_with_a_workers_records(
        app: Crisper) -> None:
    with run_inline(app):
        job = app.submit("inline.chatty", {"lines": 2, "steps": 3})

        assert job.refresh().state is S.SUCCEEDED
        assert reasons(app, job.id) == [(None, "queued", "submitted"),
                                        ("queued", "running", "claimed"),
                                        ("running", "succeeded", "succeeded")]
        assert [line.message for line in app.jobs.logs(job.id)] == ["line 0", "line 1"]
        assert (job.record.progress_current, job.record.progress_total) == (3, 3)
        with pytest.raises(InvalidParams):  # the same validation as ever
            app.submit("inline.chatty", {"lines": "many"})


def test_retries_run_at_once_and_failures_are_recorded(app: Crisper) -> None:
    with run_inline(app) as jobs:
        flaky = app.submit("inline.flaky", {"fail_times": 2})
        fatal = app.submit("inline.fatal")

    assert flaky.refresh().state is S.SUCCEEDED and flaky.result == 3
    assert [r for r in reasons(app, flaky.id) if r[2] == "retry_due"] == [
        ("retrying", "queued", "retry_due")] * 2
    assert fatal.refresh().state is S.FAILED and fatal.error["type"] == "KeyError"
    assert jobs.now().total_seconds() >= 2 * 600 - 5  # the clock jumped over two back-offs


def test_backoff_and_delays_wait_for_the_testing_clock_when_asked(app: Crisper) -> None:
    with run_inline(app, skip_backoff=False) as jobs:
        flaky = app.submit("inline.flaky", {"fail_times": 1})
        later = app.submit("inline.child", {"n": 3}, delay="1h")
        assert (flaky.refresh().state, later.refresh().state) == (S.RETRYING, S.SCHEDULED)

        assert jobs.advance("10m") == 1
        assert (flaky.refresh().state, later.refresh().state) == (S.SUCCEEDED, S.SCHEDULED)
        assert jobs.advance("1h") == 1
        assert later.refresh().result == 9


def test_jobs_submitted_by_a_job_or_inside_a_transaction_run_after_it(app: Crisper) -> None:
    with run_inline(app) as jobs:
        parent = app.submit("inline.parent", {"children": 2})
        with Session(app.store.engine) as session, session.begin():
            in_tx = app.submit("inline.child", {"n": 5}, session=session)
            assert in_tx.id not in jobs.ran  # not before the commit
        assert in_tx.refresh().state is S.SUCCEEDED

    assert parent.refresh().result == 2
    assert len(jobs.ran) == 4 and jobs.ran[0] == parent.id and jobs.ran[-1] == in_tx.id
    assert sorted(app.get(i).result for i in jobs.ran[1:3]) == [0, 1]
