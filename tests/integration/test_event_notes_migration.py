"""Migration 0015: cancel requests stored as `running -> running` become notes (no states)."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from crisper.store.migrate import alembic_config, upgrade
from tests.harness import Backend

INSERT = ("INSERT INTO crisper_job_events (job_id, at, from_state, to_state, reason, attempt) "
          "VALUES (:job, :at, :source, :target, :reason, 1)")


def test_stored_cancel_requests_become_notes_and_go_back(backend: Backend) -> None:
    app = backend.app_with(queues=["default"])
    job = app.submit("probe.noop", hold=True)
    command.downgrade(alembic_config(app.store), "0014")
    with app.store.engine.begin() as conn:
        for source, target, reason in [("running", "running", "cancel_requested"),
                                       ("running", "running", "cancel_not_forcible"),
                                       ("queued", "running", "claimed")]:
            conn.execute(text(INSERT), {"job": job.id.hex if backend.name.startswith("sqlite")
                                        else job.id, "at": job.record.created_at,
                                        "source": source, "target": target, "reason": reason})

    upgrade(app.store)
    moves = [(e.from_state, e.to_state, e.reason) for e in app.jobs.events(job.id)]
    assert moves == [(None, "held", "submitted"), (None, None, "cancel_requested"),
                     (None, None, "cancel_not_forcible"), ("queued", "running", "claimed")]

    command.downgrade(alembic_config(app.store), "0014")
    with app.store.engine.connect() as conn:
        rows = conn.execute(text("SELECT from_state, to_state FROM crisper_job_events "
                                 "WHERE reason LIKE 'cancel%' ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [("running", "running")] * 2
    upgrade(app.store)
