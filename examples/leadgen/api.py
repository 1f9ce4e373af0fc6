"""The campaigns' HTTP API, with the write-up's endpoints and statuses.

    POST /campaigns                 create: a draft (its job is held), 201
    GET  /campaigns                 the live status list (status, counters, progress, attempt)
    GET  /campaigns/{id}            one campaign
    POST /campaigns/{id}/start      draft -> queued, 202 (409 otherwise)
    POST /campaigns/{id}/stop       queued/running -> cancelled; a running one is killed after
                                    the grace period if its code does not stop, 202
    POST /campaigns/{id}/restart    completed/failed/cancelled -> statistics reset, queued, 202

Run it: CRISPER_APP=leadgen.jobs uvicorn --factory leadgen.api:create_api (from examples/),
with `crisper worker -Q campaigns` and `crisper scheduler` beside it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import select

from crisper import Crisper, InvalidTransition, JobNotFound, JobState
from crisper.records import JobRecord
from crisper.states import check_action
from crisper.store.jobs import JobFilter
from leadgen import jobs

STATUS = {JobState.HELD: "draft", JobState.SCHEDULED: "queued", JobState.QUEUED: "queued",
          JobState.RETRYING: "queued", JobState.RUNNING: "running",
          JobState.SUCCEEDED: "completed", JobState.FAILED: "failed",
          JobState.CANCELLED: "cancelled"}


class NewCampaign(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    sector: str | None = Field(None, max_length=64)
    region: str | None = Field(None, max_length=64)
    min_employees: int = Field(10, ge=0)
    max_leads: int = Field(100, ge=1, le=10_000)


def view(row: Any, job: JobRecord) -> dict[str, Any]:
    return {"id": str(row.id), "name": row.name, "status": STATUS[job.state],
            "sector": row.sector, "region": row.region,
            "companies_scanned": row.companies_scanned, "leads_created": row.leads_created,
            "progress": job.percent, "attempt": job.attempt, "max_attempts": job.max_attempts,
            "retry_at": job.run_at.isoformat() if job.state is JobState.RETRYING and job.run_at
            else None,
            "error": job.error["message"] if job.error else None,
            "task_id": str(job.id), "created_at": row.created_at.isoformat(),
            "started_at": job.started_at.isoformat() if job.started_at else None,
            "completed_at": job.finished_at.isoformat() if job.finished_at else None}


def create_api(crisper: Crisper | None = None) -> FastAPI:
    crisper = crisper or jobs.crisper
    crisper.store.create_all()
    jobs.metadata.create_all(crisper.store.engine)
    api = FastAPI(title="Lead-generation campaigns")

    def campaign_row(campaign_id: uuid.UUID) -> Any:
        with crisper.store.read() as s:
            row = s.execute(select(jobs.campaigns).where(jobs.campaigns.c.id == campaign_id)
                            ).first()
        if row is None:
            raise HTTPException(404, f"no campaign {campaign_id}")
        return row

    def one(campaign_id: uuid.UUID) -> dict[str, Any]:
        row = campaign_row(campaign_id)
        return view(row, crisper.jobs.get(row.job_id))

    @api.post("/campaigns", status_code=201)
    def create(body: NewCampaign) -> dict[str, Any]:
        cid = uuid.uuid4()
        with crisper.store.transaction() as s:  # the campaign and its held job, or neither
            job = crisper.submit(jobs.RUN, {"campaign_id": str(cid)}, session=s, hold=True,
                                 metadata={"campaign": str(cid)})
            s.execute(jobs.campaigns.insert().values(
                id=cid, job_id=job.id, created_at=datetime.now(UTC), companies_scanned=0,
                leads_created=0, **body.model_dump()))
        return one(cid)

    @api.get("/campaigns")
    def status_list(limit: int = 100) -> list[dict[str, Any]]:
        with crisper.store.read() as s:
            rows = s.execute(select(jobs.campaigns).order_by(jobs.campaigns.c.created_at.desc())
                             .limit(min(max(limit, 1), 500))).all()
        found = {j.id: j for j in crisper.jobs.list_jobs(
            JobFilter(ids=[r.job_id for r in rows]), limit=len(rows) or 1)}
        return [view(r, found[r.job_id]) for r in rows if r.job_id in found]

    @api.get("/campaigns/{campaign_id}")
    def read(campaign_id: uuid.UUID) -> dict[str, Any]:
        return one(campaign_id)

    def act(campaign_id: uuid.UUID, action: str) -> dict[str, Any]:
        row = campaign_row(campaign_id)
        try:
            if action == "restart":
                job = crisper.jobs.get(row.job_id)
                check_action(job.id, job.state, "retried")  # only an ended campaign restarts
                with crisper.store.transaction() as s:
                    jobs.reset_counters(s, campaign_id)
                crisper.jobs.retry(row.job_id)
            else:
                {"start": crisper.jobs.start, "stop": crisper.jobs.cancel}[action](row.job_id)
        except (InvalidTransition, JobNotFound) as exc:
            raise HTTPException(409, f"cannot {action} this campaign: {exc}") from None
        return one(campaign_id)

    for action in ("start", "stop", "restart"):
        api.add_api_route(f"/campaigns/{{campaign_id}}/{action}",
                          _bind(act, action), methods=["POST"], status_code=202)
    return api


def _bind(act: Any, action: str) -> Any:
    def route(campaign_id: uuid.UUID) -> dict[str, Any]:
        return act(campaign_id, action)  # type: ignore[no-any-return]

    route.__name__ = f"{action}_campaign"
    return route
