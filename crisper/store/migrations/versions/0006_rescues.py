"""Worker losses: attempts handed back unspent, rescue count, interrupted mark, forcible flag.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import crisper.store.models

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TS = crisper.store.models.UTCDateTime


def upgrade() -> None:
    op.add_column("crisper_jobs", sa.Column("returned_attempts", sa.Integer(),
                                            server_default="0", nullable=False))
    op.add_column("crisper_jobs", sa.Column("rescues", sa.Integer(), server_default="0",
                                            nullable=False))
    op.add_column("crisper_jobs", sa.Column("interrupted_at", _TS(timezone=True), nullable=True))
    op.add_column("crisper_jobs", sa.Column("forcible", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("crisper_jobs") as batch:
        for column in ("forcible", "interrupted_at", "rescues", "returned_attempts"):
            batch.drop_column(column)
