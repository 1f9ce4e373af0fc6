"""GIN indexes on tags and metadata only for the jobs that carry them.

Every move of a job writes a new row version, and on PostgreSQL a GIN index took an entry
for each version even when the job had no tags (`[]`) or no metadata (NULL), which is most
jobs: two index insertions of the dearest kind in each submit, claim and outcome. A tag
filter repeats the tags index's predicate (store/tags.py); a metadata filter's `@>` is
strict, which the planner knows implies `metadata IS NOT NULL`.

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

# column: the predicate of its partial index (store/models.tagged for the tags)
PRESENT = {"tags": "tags <> '[]'::jsonb", "metadata": "metadata IS NOT NULL"}


def upgrade() -> None:
    _recreate(partial=True)


def downgrade() -> None:
    _recreate(partial=False)


def _recreate(partial: bool) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite has no GIN indexes
    for column, present in PRESENT.items():
        name = f"ix_crisper_jobs_{column}_gin"
        op.drop_index(name, table_name="crisper_jobs")
        op.create_index(name, "crisper_jobs", [column], postgresql_using="gin",
                        postgresql_ops={column: "jsonb_path_ops"},
                        postgresql_where=sa.text(present) if partial else None)
