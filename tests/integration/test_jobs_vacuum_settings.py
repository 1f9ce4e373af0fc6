"""Migration 0021: autovacuum cleans the jobs table, indexes included, after a fixed number
of dead rows, however large the table (the claim index's dead entries, docs/decisions.md)."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import text

from crisper import Crisper
from crisper.store.migrate import alembic_config, upgrade
from tests.harness import Backend


def _options(app: Crisper) -> set[str]:
    """The jobs table's storage settings, as PostgreSQL lists them."""
    with app.store.engine.connect() as conn:
        listed = conn.execute(text(
            "SELECT reloptions FROM pg_class WHERE oid = 'crisper_jobs'::regclass")).scalar()
    return set(listed or [])


def _vacuum_due_at(app: Crisper, rows: float) -> float:
    """The dead rows at which autovacuum would take the jobs table if it held `rows` rows:
    its threshold plus its scale factor times `rows`, from the table's settings or else the
    server's."""
    options = dict(o.split("=", 1) for o in _options(app))
    with app.store.engine.connect() as conn:
        server = {name: float(conn.execute(text(f"SHOW {name}")).scalar_one())
                  for name in ("autovacuum_vacuum_threshold", "autovacuum_vacuum_scale_factor")}
    setting = {**server, **{k: float(v) for k, v in options.items() if k in server}}
    return (setting["autovacuum_vacuum_threshold"]
            + setting["autovacuum_vacuum_scale_factor"] * rows)


@pytest.mark.backends("postgres-redis")
def test_the_jobs_table_is_vacuumed_after_ten_thousand_dead_rows_at_any_size(
        backend: Backend) -> None:
    # Given the schema up to date
    app = backend.app_with(queues=["default"])

    # Then the jobs table is vacuumed, indexes included, after 10,000 dead rows, whether it
    # holds ten thousand rows or ten million (the server's default waits for two million)
    assert _options(app) == {"autovacuum_vacuum_scale_factor=0",
                             "autovacuum_vacuum_threshold=10000", "vacuum_index_cleanup=on"}
    assert _vacuum_due_at(app, 10_000) == _vacuum_due_at(app, 10_000_000) == 10_000

    # And going back leaves the server's defaults, and forward sets them again
    command.downgrade(alembic_config(app.store), "0020")
    assert _options(app) == set()
    assert _vacuum_due_at(app, 10_000_000) > 1_000_000
    upgrade(app.store)
    assert "vacuum_index_cleanup=on" in _options(app)
    app.store.close()
