"""A cancel request is a note in a job's history, not a move: events may have no states.

An event that moved the job has a `to_state` (and a `from_state`, unless it created the job);
a note (`cancel_requested`, `cancel_not_forcible`) has neither. Until now notes were stored
as `running -> running`, a move the transition table forbids; they are rewritten here.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

NOTES = "('cancel_requested', 'cancel_not_forcible')"


def upgrade() -> None:
    with op.batch_alter_table("crisper_job_events") as batch:
        batch.alter_column("to_state", existing_type=sa.String(16), nullable=True)
    op.execute("UPDATE crisper_job_events SET from_state = NULL, to_state = NULL "
               f"WHERE reason IN {NOTES} AND from_state = to_state")


def downgrade() -> None:
    op.execute("UPDATE crisper_job_events SET from_state = 'running', to_state = 'running' "
               "WHERE to_state IS NULL")
    with op.batch_alter_table("crisper_job_events") as batch:
        batch.alter_column("to_state", existing_type=sa.String(16), nullable=False)
