"""The migrated schema is exactly the models, on PostgreSQL and on SQLite."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Integer, MetaData, Table, inspect

from crisper.store.migrate import alembic_config
from crisper.store.models import POSTGRESQL_ONLY_INDEXES, metadata
from tests.harness import Backend


def test_migrations_match_the_models(backend: Backend) -> None:
    store = backend.app.store
    tables = set(inspect(store.engine).get_table_names())
    assert {"crisper_queues", "crisper_schedules", "crisper_maintenance_runs"} <= tables
    # (primary keys are not compared below: schedule names are per tenant)
    pk = inspect(store.engine).get_pk_constraint("crisper_schedules")["constrained_columns"]
    assert sorted(pk) == ["name", "tenant"]
    with store.engine.connect() as conn:
        version = MigrationContext.configure(
            conn, opts={"version_table": "crisper_alembic_version"}).get_current_revision()
        head = ScriptDirectory.from_config(alembic_config(store)).get_current_head()
        assert version == head
        context = MigrationContext.configure(
            conn, opts={"version_table": "crisper_alembic_version",
                        "include_name": lambda name, kind, _: kind != "table"
                        or name.startswith("crisper_"),
                        "include_object": lambda _obj, name, kind, _reflected, _other: not (
                            kind == "index" and name in POSTGRESQL_ONLY_INDEXES
                            and conn.dialect.name != "postgresql")})
        assert compare_metadata(context, metadata) == []
        # The comparison does see differences: a model the database lacks is reported
        extra = MetaData()
        for table in metadata.tables.values():
            table.to_metadata(extra)
        Table("crisper_not_migrated", extra, Column("id", Integer, primary_key=True))
        assert compare_metadata(context, extra) != []
