"""Schedule names are unique per tenant: the key is (name, tenant), and so is a fire's job.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_crisper_jobs_schedule_fire", table_name="crisper_jobs")
    op.create_index("ix_crisper_jobs_schedule_fire", "crisper_jobs",
                    ["tenant", "schedule_name", "fire_time"], unique=True)
    _primary_key(["name", "tenant"])


def downgrade() -> None:
    _primary_key(["name"])
    op.drop_index("ix_crisper_jobs_schedule_fire", table_name="crisper_jobs")
    op.create_index("ix_crisper_jobs_schedule_fire", "crisper_jobs",
                    ["schedule_name", "fire_time"], unique=True)


def _primary_key(columns: list[str]) -> None:
    """Replace the schedules' primary key (SQLite: by copying the table, as batch mode does)."""
    with op.batch_alter_table("crisper_schedules", recreate="always") as batch:
        batch.drop_constraint("pk_crisper_schedules", type_="primary")
        batch.create_primary_key("pk_crisper_schedules", columns)
