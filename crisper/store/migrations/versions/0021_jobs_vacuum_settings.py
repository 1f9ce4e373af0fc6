"""Autovacuum cleans the jobs table after a fixed number of moves, indexes included.

Every claim leaves a dead entry at the front of its queue's claim index, and the next claim
steps over it: about one more index page per 120 jobs claimed since the last vacuum. By
default autovacuum waits for a fifth of the table to be dead, which a table of 10 million
finished jobs reaches after about a million claims; in a 300,000-job drain on such a table
the claims read up to 2,300 index pages each and the rate fell from 1,500 to 350 jobs/s.
And a vacuum that finds dead rows on under 2 % of the table's pages skips the indexes, so
even a timely one would leave the claim index as it was. Here the table is vacuumed once
VACUUM_AFTER rows are dead, whatever its size (as often as autovacuum visits the database,
once a minute by default), with its indexes each time.

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

VACUUM_AFTER = 10_000  # dead rows; a job's claim and outcome leave two
SETTINGS = ("autovacuum_vacuum_scale_factor", "autovacuum_vacuum_threshold",
            "vacuum_index_cleanup")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite has no vacuum settings per table
    op.execute(f"ALTER TABLE crisper_jobs SET (autovacuum_vacuum_scale_factor = 0, "
               f"autovacuum_vacuum_threshold = {VACUUM_AFTER}, vacuum_index_cleanup = on)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE crisper_jobs RESET ({', '.join(SETTINGS)})")
