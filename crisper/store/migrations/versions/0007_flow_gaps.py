"""Schedules say where they came from (code or api); retention may drop only a job's payload.

Revision ID: 0007
Revises: 0005 (rechain to 0006 when merged after it)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import crisper.store.models

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("crisper_schedules", sa.Column("source", sa.String(length=8),
                                                 server_default="api", nullable=False))
    op.add_column("crisper_jobs", sa.Column(
        "payload_dropped_at", crisper.store.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("crisper_jobs") as batch:
        batch.drop_column("payload_dropped_at")
    with op.batch_alter_table("crisper_schedules") as batch:
        batch.drop_column("source")
