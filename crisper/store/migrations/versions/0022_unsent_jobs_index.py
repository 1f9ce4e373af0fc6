"""The relay's index: queued jobs whose wake-up has not gone out, per queue, in claim order.

The relay sends these every half second, a batch at a time. Found through the index of all
queued jobs' sending times, each batch sorted every unsent job by priority: 150-220 ms per
batch with 300,000 unsent (a queue resumed after a pause, a campaign of scheduled jobs come
due), and a paused queue's unsent jobs were read on every tick only to be skipped. Here the
relay finds the queues with unsent jobs by a skip scan and reads each one's share of a batch
in order. A job submitted while its queue takes wake-ups is inserted sent, so on that path this
index takes no entries.

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

UNSENT = sa.text("state = 'queued' AND dispatched_at IS NULL AND source <> 'observed'")


def upgrade() -> None:
    op.create_index("ix_crisper_jobs_unsent", "crisper_jobs",
                    ["queue", sa.text("priority DESC"), "id"],
                    postgresql_where=UNSENT, sqlite_where=UNSENT)


def downgrade() -> None:
    op.drop_index("ix_crisper_jobs_unsent", table_name="crisper_jobs")
