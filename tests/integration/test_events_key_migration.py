"""Migration 0019: a job's events lose their foreign key to the job, and keep their rows."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect

from crisper import Crisper
from crisper.store.migrate import alembic_config, upgrade
from tests.harness import Backend


def _event_keys(app: Crisper) -> list[str]:
    """The tables the events' foreign keys point to."""
    with app.store.engine.connect() as conn:
        keys = inspect(conn).get_foreign_keys("crisper_job_events")
    return [key["referred_table"] for key in keys]


def test_events_lose_their_key_and_keep_their_rows_both_ways(backend: Backend) -> None:
    # Given a job with its history, on the schema before 0019 (events keyed to jobs)
    app = backend.app_with(queues=["default"])
    job = app.submit("probe.noop", hold=True)
    app.jobs.start(job.id)
    history = [(e.from_state, e.to_state, e.reason) for e in app.jobs.events(job.id)]
    command.downgrade(alembic_config(app.store), "0018")
    assert _event_keys(app) == ["crisper_jobs"]

    # When the schema is brought up to date, Then the key is gone and the history is whole
    upgrade(app.store)
    assert _event_keys(app) == []
    assert [(e.from_state, e.to_state, e.reason) for e in app.jobs.events(job.id)] == history
    assert len(history) == 2

    # And going back restores the key, with the same rows
    command.downgrade(alembic_config(app.store), "0018")
    assert _event_keys(app) == ["crisper_jobs"]
    assert [(e.from_state, e.to_state, e.reason) for e in app.jobs.events(job.id)] == history
    upgrade(app.store)
    app.store.close()
