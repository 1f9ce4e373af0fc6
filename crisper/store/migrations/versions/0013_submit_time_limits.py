"""A submit may give its own time limits: the hard one is stored beside the soft `timeout`.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("crisper_jobs", sa.Column("hard_timeout", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("crisper_jobs") as batch:
        batch.drop_column("hard_timeout")
