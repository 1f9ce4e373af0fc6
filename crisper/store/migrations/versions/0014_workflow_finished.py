"""A workflow's end is noted once (`finished_at`), so `workflow.finished` goes out once per end.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import crisper.store.models

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("crisper_workflows",
                  sa.Column("finished_at", crisper.store.models.UTCDateTime(timezone=True)))
    op.create_index("ix_crisper_workflows_unfinished", "crisper_workflows", ["id"],
                    postgresql_where=sa.text("finished_at IS NULL"),
                    sqlite_where=sa.text("finished_at IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_crisper_workflows_unfinished", table_name="crisper_workflows")
    with op.batch_alter_table("crisper_workflows") as batch:
        batch.drop_column("finished_at")
