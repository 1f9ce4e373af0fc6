"""Flow control and schedules: queues (pause), schedules, maintenance runs; job flow columns.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import crisper.store.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ACTIVE = "state IN ('held', 'scheduled', 'queued', 'running', 'retrying')"
_JSONB = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_TS = crisper.store.models.UTCDateTime


def upgrade() -> None:
    op.add_column("crisper_jobs", sa.Column("unique_key", sa.String(length=300), nullable=True))
    op.add_column("crisper_jobs", sa.Column("concurrency_key", sa.String(length=300), nullable=True))
    op.add_column("crisper_jobs", sa.Column("rate_token_at", _TS(timezone=True), nullable=True))
    op.add_column("crisper_jobs", sa.Column("flow_wait", sa.String(length=16), nullable=True))
    op.add_column("crisper_jobs", sa.Column("schedule_name", sa.String(length=200), nullable=True))
    op.add_column("crisper_jobs", sa.Column("fire_time", _TS(timezone=True), nullable=True))
    op.create_index("ix_crisper_jobs_unique_active", "crisper_jobs", ["tenant", "unique_key"],
                    unique=True, postgresql_where=sa.text(_ACTIVE), sqlite_where=sa.text(_ACTIVE))
    op.create_index("ix_crisper_jobs_concurrency", "crisper_jobs", ["concurrency_key", "state"],
                    postgresql_where=sa.text("concurrency_key IS NOT NULL"),
                    sqlite_where=sa.text("concurrency_key IS NOT NULL"))
    op.create_index("ix_crisper_jobs_schedule_fire", "crisper_jobs",
                    ["schedule_name", "fire_time"], unique=True)
    op.create_table(
        "crisper_queues",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("paused_at", _TS(timezone=True), nullable=True),
        sa.Column("updated_at", _TS(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_crisper_queues")),
    )
    op.create_table(
        "crisper_schedules",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.Column("params", _JSONB, nullable=False),
        sa.Column("queue", sa.String(length=200), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=True),
        sa.Column("tenant", sa.String(length=200), server_default="default", nullable=False),
        sa.Column("cron", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), server_default="UTC", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("overlap", sa.String(length=16), server_default="allow", nullable=False),
        sa.Column("catchup", sa.String(length=16), server_default="none", nullable=False),
        sa.Column("catchup_window", sa.Float(), server_default="3600", nullable=False),
        sa.Column("jitter", sa.Float(), server_default="0", nullable=False),
        sa.Column("next_fire_at", _TS(timezone=True), nullable=True),
        sa.Column("last_fire_at", _TS(timezone=True), nullable=True),
        sa.Column("last_job_id", sa.Uuid(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("fires", sa.Integer(), server_default="0", nullable=False),
        sa.Column("skipped", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", _TS(timezone=True), nullable=False),
        sa.Column("updated_at", _TS(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_crisper_schedules")),
    )
    op.create_index("ix_crisper_schedules_next_fire_at", "crisper_schedules", ["next_fire_at"])
    op.create_table(
        "crisper_maintenance_runs",
        sa.Column("unit", sa.String(length=64), nullable=False),
        sa.Column("every", sa.Float(), nullable=False),
        sa.Column("last_run_at", _TS(timezone=True), nullable=False),
        sa.Column("last_count", sa.Integer(), nullable=False),
        sa.Column("last_by", sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint("unit", name=op.f("pk_crisper_maintenance_runs")),
    )


def downgrade() -> None:
    op.drop_table("crisper_maintenance_runs")
    op.drop_index("ix_crisper_schedules_next_fire_at", table_name="crisper_schedules")
    op.drop_table("crisper_schedules")
    op.drop_table("crisper_queues")
    op.drop_index("ix_crisper_jobs_schedule_fire", table_name="crisper_jobs")
    op.drop_index("ix_crisper_jobs_concurrency", table_name="crisper_jobs")
    op.drop_index("ix_crisper_jobs_unique_active", table_name="crisper_jobs")
    with op.batch_alter_table("crisper_jobs") as batch:
        for column in ("fire_time", "schedule_name", "flow_wait", "rate_token_at",
                       "concurrency_key",
                       "unique_key"):
            batch.drop_column(column)
