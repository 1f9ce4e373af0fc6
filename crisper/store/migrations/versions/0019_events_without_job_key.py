"""A job's events without a foreign key to the job.

Every move of a job writes its event in the statement that moves it, and the key's check
(PostgreSQL runs `SELECT … FOR KEY SHARE` on the job) then locked the row that the same
statement had just written, once per event. On the path every job takes, its outcome and the
claim of the next job with their two events, that was about a tenth of the database's CPU
per job (bench/claim_ceiling, alternating runs: 0.51 → 0.46 ms).

The key guarded nothing the code does not: events are written only in their job's moves,
and deleted only with their job, by retention, which deletes them first and explicitly (as
it did already, for databases that do not enforce ON DELETE CASCADE).

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

KEY = "fk_crisper_job_events_job_id"


def upgrade() -> None:
    with op.batch_alter_table("crisper_job_events") as batch:  # SQLite: a copy of the table
        batch.drop_constraint(KEY, type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("crisper_job_events") as batch:
        batch.create_foreign_key(KEY, "crisper_jobs", ["job_id"], ["id"], ondelete="CASCADE")
