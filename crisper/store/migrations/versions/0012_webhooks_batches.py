"""Webhooks and batches: a job's callback URL and batch, tenant secrets, subscriptions, the
delivery outbox with its attempts, and batches with their counters and once-only flags.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from crisper.store.models import BIGID, JSONB, UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("crisper_jobs", sa.Column("callback_url", sa.String(2000), nullable=True))
    op.add_column("crisper_jobs", sa.Column("batch_id", sa.Uuid(), nullable=True))
    op.create_index("ix_crisper_jobs_batch_id", "crisper_jobs", ["batch_id"])
    op.create_table(
        "crisper_webhook_secrets",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_crisper_webhook_secrets"),
    )
    op.create_index("ix_crisper_webhook_secrets_tenant", "crisper_webhook_secrets", ["tenant"])
    op.create_table(
        "crisper_subscriptions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("events", JSONB, nullable=False),
        sa.Column("type", sa.String(200), nullable=True),
        sa.Column("queue", sa.String(200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_crisper_subscriptions"),
    )
    op.create_index("ix_crisper_subscriptions_tenant", "crisper_subscriptions", ["tenant"])
    _deliveries()
    _batches()


def _deliveries() -> None:
    op.create_table(
        "crisper_deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("url", sa.String(2000), nullable=True),
        sa.Column("subscription_id", sa.Uuid(), nullable=True),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("batch_id", sa.Uuid(), nullable=True),
        sa.Column("body", JSONB, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_at", UTCDateTime(), nullable=False),
        sa.Column("give_up_at", UTCDateTime(), nullable=True),
        sa.Column("lease_token", sa.Uuid(), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_crisper_deliveries"),
    )
    op.create_index("ix_crisper_deliveries_due", "crisper_deliveries", ["next_at"],
                    postgresql_where=sa.text("state = 'pending'"),
                    sqlite_where=sa.text("state = 'pending'"))
    op.create_index("ix_crisper_deliveries_job_id", "crisper_deliveries", ["job_id"])
    op.create_index("ix_crisper_deliveries_batch_id", "crisper_deliveries", ["batch_id"])
    op.create_table(
        "crisper_delivery_attempts",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.Uuid(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["crisper_deliveries.id"],
                                name="fk_crisper_delivery_attempts_delivery_id",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_crisper_delivery_attempts"),
    )
    op.create_index("ix_crisper_delivery_attempts_delivery_id", "crisper_delivery_attempts",
                    ["delivery_id"])


def _batches() -> None:
    op.create_table(
        "crisper_batches",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("description", sa.String(500), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("succeeded", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cancelled", sa.Integer(), server_default="0", nullable=False),
        sa.Column("callbacks", JSONB, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("success_fired_at", UTCDateTime(), nullable=True),
        sa.Column("complete_fired_at", UTCDateTime(), nullable=True),
        sa.Column("death_fired_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_crisper_batches"),
    )
    op.create_index("ix_crisper_batches_tenant_id", "crisper_batches", ["tenant", "id"])


def downgrade() -> None:
    for table in ("crisper_batches", "crisper_delivery_attempts", "crisper_deliveries",
                  "crisper_subscriptions", "crisper_webhook_secrets"):
        op.drop_table(table)
    op.drop_index("ix_crisper_jobs_batch_id", table_name="crisper_jobs")
    with op.batch_alter_table("crisper_jobs") as batch:
        batch.drop_column("batch_id")
        batch.drop_column("callback_url")
