"""The platform's own tables, in Crisper's database (a row and its job commit together).

Job state, attempts, errors and results are Crisper's; these hold only the business facts:
leads, campaigns, e-mails, demos and computed figures.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
)

metadata = MetaData()


def now() -> datetime:
    return datetime.now(UTC)


leads = Table(
    "marketing_leads", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(254), nullable=False, unique=True),  # the merge's natural key
    Column("name", String(200), nullable=False),
    Column("company", String(200), nullable=False),
    Column("city", String(100), nullable=False),
    Column("sources", JSON, nullable=False),  # every source that listed it
    Column("score", Float),
    Column("analysis", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, default=now),
)
campaigns = Table(
    "marketing_campaigns", metadata,
    Column("id", Uuid(), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),  # draft scheduled running paused completed
    Column("send_at", DateTime(timezone=True)),
    Column("recipients", Integer, nullable=False, default=0),
    Column("sent", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False, default=now),
)
emails = Table(
    "marketing_emails", metadata,
    Column("id", Uuid(), primary_key=True),
    Column("campaign_id", Uuid()),
    Column("lead_id", Integer),
    Column("to", String(254), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),  # queued sent rendered failed
    Column("test_mode", Boolean, nullable=False, default=False),
    Column("resends", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, default=now),
    Column("sent_at", DateTime(timezone=True)),
)
demos = Table(
    "marketing_demos", metadata,
    Column("id", Uuid(), primary_key=True),
    Column("lead_id", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # building ready failed
    Column("artifacts", JSON, nullable=False),  # kind -> file path
    Column("url", String(500)),
    Column("created_at", DateTime(timezone=True), nullable=False, default=now),
)
figures = Table(  # analytics, monitoring snapshots, the trained model: by key
    "marketing_figures", metadata,
    Column("key", String(100), primary_key=True),
    Column("data", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, default=now),
)
