"""API keys: each belongs to a tenant and carries scopes; only a hash of the secret is kept.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import crisper.store.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crisper_api_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("secret_hash", sa.String(length=128), nullable=False),
        sa.Column("scopes", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()),
                                                    "postgresql"), nullable=False),
        sa.Column("created_at", crisper.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", crisper.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", crisper.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crisper_api_keys")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_crisper_api_keys_secret_hash")),
    )


def downgrade() -> None:
    op.drop_table("crisper_api_keys")
