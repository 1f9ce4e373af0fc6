"""Dispatch errors: a job whose wake-up message cannot be published waits with its error.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import crisper.store.models

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TS = crisper.store.models.UTCDateTime
_QUEUED = "state = 'queued'"


def upgrade() -> None:
    op.add_column("crisper_jobs", sa.Column("dispatch_error", sa.Text(), nullable=True))
    op.add_column("crisper_jobs", sa.Column("dispatch_attempts", sa.Integer(),
                                            server_default="0", nullable=False))
    op.add_column("crisper_jobs", sa.Column("dispatch_after", _TS(timezone=True), nullable=True))
    op.create_index("ix_crisper_jobs_dispatched_at", "crisper_jobs", ["dispatched_at"],
                    postgresql_where=sa.text(_QUEUED), sqlite_where=sa.text(_QUEUED))


def downgrade() -> None:
    op.drop_index("ix_crisper_jobs_dispatched_at", table_name="crisper_jobs")
    with op.batch_alter_table("crisper_jobs") as batch:
        for column in ("dispatch_after", "dispatch_attempts", "dispatch_error"):
            batch.drop_column(column)
