"""Schedules say where they came from (code or api); retention may drop only a job's payload;
jobs carry searchable metadata (GIN indexes on metadata and tags on PostgreSQL).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import crisper.store.models

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("crisper_schedules", sa.Column("source", sa.String(length=8),
                                                 server_default="api", nullable=False))
    op.add_column("crisper_jobs", sa.Column(
        "payload_dropped_at", crisper.store.models.UTCDateTime(timezone=True), nullable=True))
    op.add_column("crisper_jobs", sa.Column("metadata", crisper.store.models.JSONB,
                                            nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        for column in ("tags", "metadata"):
            op.create_index(f"ix_crisper_jobs_{column}_gin", "crisper_jobs", [column],
                            postgresql_using="gin", postgresql_ops={column: "jsonb_path_ops"})


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for column in ("tags", "metadata"):
            op.drop_index(f"ix_crisper_jobs_{column}_gin", table_name="crisper_jobs")
    with op.batch_alter_table("crisper_jobs") as batch:
        batch.drop_column("metadata")
        batch.drop_column("payload_dropped_at")
    with op.batch_alter_table("crisper_schedules") as batch:
        batch.drop_column("source")
