"""Workflows kept in the database: the workflows table, their edges, and three node columns
on jobs (workflow, node name, parents still pending).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import crisper.store.models

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("crisper_jobs", sa.Column("workflow_id", sa.Uuid(), nullable=True))
    op.add_column("crisper_jobs", sa.Column("workflow_node", sa.String(length=200),
                                            nullable=True))
    op.add_column("crisper_jobs", sa.Column("pending_parents", sa.Integer(), nullable=True))
    op.create_index("ix_crisper_jobs_workflow", "crisper_jobs", ["workflow_id"],
                    postgresql_where=sa.text("workflow_id IS NOT NULL"),
                    sqlite_where=sa.text("workflow_id IS NOT NULL"))
    op.create_table(
        "crisper_workflows",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant", sa.String(length=200), server_default="default", nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("nodes", sa.Integer(), nullable=False),
        sa.Column("created_at", crisper.store.models.UTCDateTime(timezone=True),
                  nullable=False),
        sa.Column("cancelled_at", crisper.store.models.UTCDateTime(timezone=True)),
        sa.Column("retried_at", crisper.store.models.UTCDateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crisper_workflows")),
    )
    op.create_index("ix_crisper_workflows_tenant_id", "crisper_workflows", ["tenant", "id"])
    op.create_table(
        "crisper_workflow_edges",
        sa.Column("parent_id", sa.Uuid(), nullable=False),
        sa.Column("child_id", sa.Uuid(), nullable=False),
        sa.Column("workflow_id", sa.Uuid(), nullable=False),
        sa.Column("policy", sa.String(length=8), nullable=False),
        sa.Column("receives", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["parent_id"], ["crisper_jobs.id"], ondelete="CASCADE",
                                name=op.f("fk_crisper_workflow_edges_parent_id")),
        sa.ForeignKeyConstraint(["child_id"], ["crisper_jobs.id"], ondelete="CASCADE",
                                name=op.f("fk_crisper_workflow_edges_child_id")),
        sa.PrimaryKeyConstraint("parent_id", "child_id", name=op.f("pk_crisper_workflow_edges")),
    )
    op.create_index("ix_crisper_workflow_edges_child_id", "crisper_workflow_edges",
                    ["child_id"])
    op.create_index("ix_crisper_workflow_edges_workflow_id", "crisper_workflow_edges",
                    ["workflow_id"])


def downgrade() -> None:
    op.drop_index("ix_crisper_workflow_edges_workflow_id", table_name="crisper_workflow_edges")
    op.drop_index("ix_crisper_workflow_edges_child_id", table_name="crisper_workflow_edges")
    op.drop_table("crisper_workflow_edges")
    op.drop_index("ix_crisper_workflows_tenant_id", table_name="crisper_workflows")
    op.drop_table("crisper_workflows")
    op.drop_index("ix_crisper_jobs_workflow", table_name="crisper_jobs")
    with op.batch_alter_table("crisper_jobs") as batch:
        batch.drop_column("pending_parents")
        batch.drop_column("workflow_node")
        batch.drop_column("workflow_id")
