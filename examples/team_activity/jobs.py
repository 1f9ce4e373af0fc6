"""Team activities: the quota and activity tables, and the job that generates a team's three.

Quotas are reserved when a request is accepted, in the same transaction as its job (api.py),
so two requests racing for the last unit cannot both get it; a generation that fails for good
gives its unit back. The default retry policy applies (one attempt): a worker that dies
mid-generation is not the job's failure, and Crisper runs the job again elsewhere without
spending it. TEAM_GENERATION_SECONDS (default 0) stands for the model's answer time.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    delete,
    func,
    update,
)

from crisper import Crisper, JobContext, Settings
from team_activity.generators import Generator, OfflineGenerator

GENERATE = "team.generate_custom_activities"
metadata = MetaData()
quotas = Table(
    "team_quotas", metadata,
    Column("organization_id", String(64), primary_key=True),
    Column("monthly_limit", Integer, nullable=False),
    Column("used", Integer, nullable=False, default=0),
)
activities = Table(
    "team_custom_activities", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", Uuid(), nullable=False, index=True),
    Column("team_id", String(64), nullable=False),
    Column("title", String(200), nullable=False),
    Column("description", Text, nullable=False),
    Column("minutes", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


def generate(crisper: Crisper, generator: Generator, ctx: JobContext, team_id: str,
             organization_id: str, requirements: str) -> dict[str, Any]:
    """Generate and store the team's activities; on a final failure, return the quota unit."""
    try:
        time.sleep(float(os.environ.get("TEAM_GENERATION_SECONDS", "0")))
        made = generator.generate(team_id, requirements)
    except Exception:
        if ctx.attempt >= ctx.max_attempts:  # no attempt left: the request is not charged
            with crisper.store.transaction() as s:
                s.execute(update(quotas).where(quotas.c.organization_id == organization_id)
                          .values(used=quotas.c.used - 1))
        raise
    job_id = uuid.UUID(str(ctx.job_id))
    with crisper.store.transaction() as s:  # a rescued re-run replaces, never duplicates
        s.execute(delete(activities).where(activities.c.job_id == job_id))
        s.execute(activities.insert(), [
            {"job_id": job_id, "team_id": team_id, "title": a.title,
             "description": a.description, "minutes": a.minutes} for a in made])
    return {"activities": [{"title": a.title, "description": a.description,
                            "minutes": a.minutes} for a in made]}


def build(settings: Settings | None = None, generator: Generator | None = None) -> Crisper:
    app = Crisper("team_activity", settings=settings)
    chosen = generator or OfflineGenerator()

    def generate_custom_activities(ctx: JobContext, team_id: str, organization_id: str,
                                   requirements: str) -> dict[str, Any]:
        """Three custom activities for a team (the write-up's generate_custom_activities_task)."""
        return generate(app, chosen, ctx, team_id, organization_id, requirements)

    app.job(name=GENERATE, queue="generation")(generate_custom_activities)
    return app


crisper = build()
