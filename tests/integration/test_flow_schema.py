"""The migrated schema is exactly the models, on PostgreSQL and on SQLite."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, Table, inspect

from crisper.store.models import metadata
from tests.harness import Backend


def test_migrations_match_the_models(backend: Backend) -> None:
    store = backend.app.store
    tables = set(inspect(store.engine).get_table_names())
    assert {"crisper_queues", "crisper_schedules", "crisper_maintenance_runs"} <= tables
    with store.engine.connect() as conn:
        version = MigrationContext.configure(
            conn, opts={"version_table": "crisper_alembic_version"}).get_current_revision()
        assert version == "0005"
        context = MigrationContext.configure(
            conn, opts={"version_table": "crisper_alembic_version",
                        "include_name": lambda name, kind, _: kind != "table"
                        or name.startswith("crisper_")})
        assert compare_metadata(context, metadata) == []
        # The comparison does see differences: a model the database lacks is reported
        extra = MetaData()
        for table in metadata.tables.values():
            table.to_metadata(extra)
        Table("crisper_not_migrated", extra, Column("id", Integer, primary_key=True))
        assert compare_metadata(context, extra) != []
