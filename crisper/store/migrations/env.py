"""Alembic environment: uses the engine Crisper hands over, never a URL from a file."""

from __future__ import annotations

from alembic import context

from crisper.store.models import metadata

engine = context.config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table="crisper_alembic_version",
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
