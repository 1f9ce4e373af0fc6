"""The claim's index: a queue's queued jobs in the order they start (priority, then id).

A worker claims the best queued job of a queue after each job it runs; without this index
every claim sorted all of the queue's queued rows. Priority is descending in the index, as
in the claim's order (priority DESC, id): a claim reads the first entry it can lock.

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
    op.create_index("ix_crisper_jobs_next_in_queue", "crisper_jobs",
                    ["queue", sa.text("priority DESC"), "id"],
                    postgresql_where=QUEUED, sqlite_where=QUEUED)


def downgrade() -> None:
    op.drop_index("ix_crisper_jobs_next_in_queue", table_name="crisper_jobs")
