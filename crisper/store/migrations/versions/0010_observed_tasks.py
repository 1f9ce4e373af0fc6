"""Jobs say where they come from: Crisper's own, or plain Celery tasks observed via signals.

Revision ID: 0010
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0007"
branch_labels = None
depends_on = None

OBSERVED = sa.text("source = 'observed'")


def upgrade() -> None:
    op.add_column("crisper_jobs", sa.Column("source", sa.String(length=16),
                                            server_default="crisper", nullable=False))
    op.create_index("ix_crisper_jobs_observed_task", "crisper_jobs", ["task_id"], unique=True,
                    postgresql_where=OBSERVED, sqlite_where=OBSERVED)


def downgrade() -> None:
    op.drop_index("ix_crisper_jobs_observed_task", table_name="crisper_jobs")
    with op.batch_alter_table("crisper_jobs") as batch:
        batch.drop_column("source")
