"""The claim's index: a queue's queued jobs in the order they start (priority, then id).

A worker claims the best queued job of a queue after each job it runs; without this index
every claim sorted all of the queue's queued rows.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

QUEUED = sa.text("state = 'queued'")


def upgrade() -> None:
    with op.batch_alter_table("crisper_jobs") as batch:
        batch.create_index("ix_crisper_jobs_next_in_queue", ["queue", "priority", "id"],
                           postgresql_where=QUEUED, sqlite_where=QUEUED)


def downgrade() -> None:
    with op.batch_alter_table("crisper_jobs") as batch:
        batch.drop_index("ix_crisper_jobs_next_in_queue")
