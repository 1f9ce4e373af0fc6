"""Lead-generation campaigns: the campaign table and the one job type that runs a campaign.

A campaign's status is its job's state, read from Crisper, never a second column kept in step
by hand: held is "draft", queued/scheduled/retrying "queued", running, succeeded "completed",
failed, cancelled. The campaign's own row keeps what Crisper does not know: its search and its
counters. The body never checks for a cancel: a stop is forced after the grace period (the
process running it is killed), so the counters stop with it.

Configuration (environment; the defaults are the write-up's): LEADGEN_SOFT_LIMIT (1h55m),
LEADGEN_HARD_LIMIT (2h), LEADGEN_RETRIES (3), LEADGEN_RETRY_DELAY (5m), LEADGEN_CANCEL_GRACE
(10s), LEADGEN_COMPANIES_CSV (companies.csv here), LEADGEN_SECONDS_PER_COMPANY (0: the time
the real system spent asking the web about each company).
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
    delete,
    select,
    update,
)
from sqlalchemy.orm import Session

from crisper import Crisper, JobContext, Retry, Settings
from leadgen.sources import Company, CsvLeadSource, LeadSource, SourceUnavailable

RUN = "leadgen.run_campaign"
metadata = MetaData()
campaigns = Table(
    "leadgen_campaigns", metadata,
    Column("id", Uuid(), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("sector", String(64)),
    Column("region", String(64)),
    Column("min_employees", Integer, nullable=False),
    Column("max_leads", Integer, nullable=False),
    Column("job_id", Uuid(), nullable=False),
    Column("companies_scanned", Integer, nullable=False, default=0),
    Column("leads_created", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
leads = Table(
    "leadgen_leads", metadata,
    Column("campaign_id", Uuid(), ForeignKey("leadgen_campaigns.id", ondelete="CASCADE"),
           primary_key=True),
    Column("company", String(200), primary_key=True),
    Column("website", String(300), nullable=False),
    Column("employees", Integer, nullable=False),
)


@dataclass(frozen=True)
class Config:
    soft_limit: str = "1h55m"
    hard_limit: str = "2h"
    retries: int = 3
    retry_delay: str = "5m"
    cancel_grace: str = "10s"
    companies_csv: Path = field(default_factory=lambda: Path(__file__).with_name("companies.csv"))
    seconds_per_company: float = 0.0

    @classmethod
    def from_env(cls) -> Config:
        env, base = os.environ.get, cls()
        return cls(env("LEADGEN_SOFT_LIMIT", base.soft_limit),
                   env("LEADGEN_HARD_LIMIT", base.hard_limit),
                   int(env("LEADGEN_RETRIES", str(base.retries))),
                   env("LEADGEN_RETRY_DELAY", base.retry_delay),
                   env("LEADGEN_CANCEL_GRACE", base.cancel_grace),
                   Path(env("LEADGEN_COMPANIES_CSV", str(base.companies_csv))),
                   float(env("LEADGEN_SECONDS_PER_COMPANY", str(base.seconds_per_company))))


def reset_counters(session: Session, campaign_id: uuid.UUID) -> None:
    """A fresh run: no leads, no counts (a restart, and each attempt, start from zero)."""
    session.execute(delete(leads).where(leads.c.campaign_id == campaign_id))
    session.execute(update(campaigns).where(campaigns.c.id == campaign_id)
                    .values(companies_scanned=0, leads_created=0))


def run_campaign(crisper: Crisper, config: Config, source: LeadSource, ctx: JobContext,
                 campaign_id: str) -> dict[str, Any]:
    """Scan the source's companies for the campaign's search; the big enough ones are leads."""
    cid = uuid.UUID(campaign_id)
    with crisper.store.transaction() as s:
        row = s.execute(select(campaigns).where(campaigns.c.id == cid)).one()
        reset_counters(s, cid)
    found: list[Company] = list(source.companies(row.sector, row.region))
    scanned = created = 0
    for company in found:
        if created >= row.max_leads:
            break
        time.sleep(config.seconds_per_company)  # the web lookups the real system made here
        scanned += 1
        is_lead = company.employees >= row.min_employees
        created += is_lead
        with crisper.store.transaction() as s:
            if is_lead:
                s.execute(leads.insert().values(campaign_id=cid, company=company.name,
                                                website=company.website,
                                                employees=company.employees))
            s.execute(update(campaigns).where(campaigns.c.id == cid)
                      .values(companies_scanned=scanned, leads_created=created))
        ctx.progress(scanned, len(found), company.name)
    ctx.logger.info("campaign %s: %d companies scanned, %d leads", row.name, scanned, created)
    return {"companies_scanned": scanned, "leads_created": created}


def build(settings: Settings | None = None, config: Config | None = None) -> Crisper:
    """The campaigns' Crisper app; its tables live in Crisper's database (one transaction
    creates a campaign and its held job)."""
    config = config or Config.from_env()
    app = Crisper("leadgen", settings=settings)
    source = CsvLeadSource(config.companies_csv)

    def campaign(ctx: JobContext, campaign_id: str) -> dict[str, Any]:
        """Run one lead-generation campaign."""
        return run_campaign(app, config, source, ctx, campaign_id)

    app.job(name=RUN, queue="campaigns", timeout=(config.soft_limit, config.hard_limit),
            cancel_grace=config.cancel_grace,
            retry=Retry(attempts=1 + config.retries, backoff=config.retry_delay, factor=1.0,
                        jitter=False, retry_on=(SourceUnavailable, TimeoutError,
                                                ConnectionError)))(campaign)
    return app


crisper = build()
