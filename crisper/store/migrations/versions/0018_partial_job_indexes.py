"""Partial indexes for the job columns most jobs leave NULL: batch, idempotency key, schedule
fire and finish time.

A job's moves (submitted, claimed, ended) each write a new row version, and each version adds
an entry to every index whose predicate it meets; a plain index on a column that is NULL for
most jobs took an entry per version all the same. Every query on these columns compares them
with a value (`=`, `<`), which PostgreSQL and SQLite know implies IS NOT NULL, so the partial
indexes serve the same queries; the unique ones refuse the same duplicates (NULLs never
conflicted).

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

# name: (columns, unique, the column whose NULLs are left out)
INDEXES = {
    "ix_crisper_jobs_batch_id": (["batch_id"], False, "batch_id"),
    "ix_crisper_jobs_tenant_idempotency_key": (["tenant", "idempotency_key"], True,
                                               "idempotency_key"),
    "ix_crisper_jobs_finished": (["finished_at"], False, "finished_at"),
    "ix_crisper_jobs_schedule_fire": (["tenant", "schedule_name", "fire_time"], True,
                                      "schedule_name"),
}


def upgrade() -> None:
    for name, (columns, unique, nullable) in INDEXES.items():
        op.drop_index(name, table_name="crisper_jobs")
        present = sa.text(f"{nullable} IS NOT NULL")
        op.create_index(name, "crisper_jobs", columns, unique=unique,
                        postgresql_where=present, sqlite_where=present)


def downgrade() -> None:
    for name, (columns, unique, _) in INDEXES.items():
        op.drop_index(name, table_name="crisper_jobs")
        op.create_index(name, "crisper_jobs", columns, unique=unique)
