"""Schedules declared in code: each schedule says where it came from (code or api).

Revision ID: 0007
Revises: 0005 (rechain to 0006 when merged after it)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("crisper_schedules", sa.Column("source", sa.String(length=8),
                                                 server_default="api", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("crisper_schedules") as batch:
        batch.drop_column("source")
