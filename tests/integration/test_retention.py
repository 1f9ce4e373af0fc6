"""Retention per job type and final state, and dropping only the payload, by a real scheduler."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from crisper import ConfigurationError, Crisper, JobNotFound, Retention
from crisper.maintenance.loop import periods
from crisper.store.models import job_events, jobs
from tests.apps import retained
from tests.harness import Backend, wait_for

RETAINED = {"CRISPER_APP": "tests.apps.retained"}


@pytest.fixture
def app(backend: Backend) -> Iterator[Crisper]:
    crisper = retained.build(backend.settings)
    yield crisper
    crisper.store.close()


def gone(app: Crisper, job_id: object) -> bool:
    try:
        app.jobs.get(job_id)
    except JobNotFound:
        return True
    return False


def event_rows(app: Crisper, job_id: uuid.UUID) -> int:
    with app.store.read() as session:
        return session.scalar(select(func.count()).select_from(job_events)
                              .where(job_events.c.job_id == job_id)) or 0


def payload_dropped(app: Crisper, job_id: object) -> bool:
    with app.store.read() as session:
        return session.scalar(select(jobs.c.payload_dropped_at).where(
            jobs.c.id == app.jobs.get(job_id).id)) is not None


@pytest.mark.timeout(180)
def test_each_type_and_final_state_is_kept_its_own_time(backend: Backend, app: Crisper) -> None:
    # Given a type keeping successes 4 s, failures 120 s and payloads 1 s, and a plain type
    # (the app's, 7 days), each with a finished success and failure
    backend.start_worker(concurrency=2, **RETAINED)
    short_ok = app.submit("ret.short", {"word": "a"})
    short_failed = app.submit("ret.short", {"word": "b", "fail": True})
    plain_ok = app.submit("ret.plain", {"word": "c"})
    for job in (short_ok, short_failed, plain_ok):
        job.wait(timeout=60)

    # When a scheduler runs its pruner
    backend.start_scheduler(**RETAINED)

    # Then the short type's jobs lose params, result and logs after 1 s but keep the record
    wait_for(lambda: payload_dropped(app, short_failed.id), 60, "the failed job's payload drop")
    failed = app.jobs.get(short_failed.id)
    assert (failed.state.value, failed.params, failed.result) == ("failed", {}, None)
    assert failed.error is not None and app.jobs.logs(failed.id) == []
    assert [e.reason for e in app.jobs.events(failed.id)]  # its history stays
    # And its success is deleted after 4 s, while its failure (120 s) and the plain type's
    # success (7 days) stay, the plain one with everything
    wait_for(lambda: gone(app, short_ok.id), 60, "the short success to be pruned")
    assert event_rows(app, short_ok.id) == 0  # its history with it (no key cascades it)
    assert event_rows(app, short_failed.id) > 0
    assert not gone(app, short_failed.id)
    plain = app.jobs.get(plain_ok.id)
    assert plain.params == {"word": "c", "fail": False} and plain.result == "C"
    assert app.jobs.logs(plain.id) and not payload_dropped(app, plain.id)


def test_the_pruner_runs_often_enough_for_the_shortest_retention(app: Crisper) -> None:
    # Given the shortest age is the 1 s payload drop, Then the pruner runs every 0.1 s
    pruner = next(every for name, every in periods(app.settings, app.registry)
                  if name == "pruner")
    assert pruner == pytest.approx(0.1)


@pytest.mark.parametrize("kwargs", [dict(succeeded="soon"), dict(failed=0),
                                    dict(succeeded="1h", payload="2h")])
def test_bad_retentions_are_refused_at_definition(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match="retention"):
        Retention(**kwargs)  # type: ignore[arg-type]


def test_each_types_retention_is_published(app: Crisper) -> None:
    from crisper import monitor

    types = {t["name"]: t["retention"] for t in monitor.job_types(app.settings, app.registry)}
    default = app.settings.retention_seconds
    assert types["ret.short"] == {"cancelled": default, "failed": 120.0, "succeeded": 4.0,
                                  "skipped": default, "payload": 1.0}
    assert types["ret.plain"]["payload"] is None
