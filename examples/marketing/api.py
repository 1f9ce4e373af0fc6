"""The platform's HTTP API: what the write-up's services called `.delay()` for, as endpoints.

    POST /emails                     one e-mail: its row and its job in one transaction, 202
                                     (`priority` 0-255 to overtake the e-mail queue's 10)
    POST /emails/batch               a templated batch (Crisper's batch e-mail job), 202
    POST /emails/test                a test message to one address, 202
    GET  /emails/{id}                queued | sent | rendered (TEST_MODE) | failed, and why
    POST /campaigns                  a draft, or scheduled with `send_at`, 201
    GET  /campaigns/{id}             status and counters
    POST /campaigns/{id}/launch|pause|resume                                       202
    POST /scrapes                    the multi-source workflow (fan-out, merge), 202
    GET  /scrapes/{id}               each source's state and the merge's result
    GET  /leads                      the stored leads
    POST /leads/{id}/analyze         score and describe a lead (AI), 202
    POST /demos                      a lead's demo site and video (a workflow), 202
    GET  /demos/{id}, GET /jobs/{id}

(No `from __future__ import annotations`: FastAPI reads the annotations at run time.)
Run it: CRISPER_APP=marketing.app uvicorn --factory marketing.api:create_api (from examples/).
"""

import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import select

from crisper import Crisper, JobNotFound
from crisper.contrib.batch_email import Recipient
from crisper.errors import WorkflowNotFound
from crisper.records import JobRecord
from marketing import app as marketing_app
from marketing.demo_jobs import demo_workflow
from marketing.email_jobs import new_email, send_request
from marketing.scraper_jobs import multi_source_workflow
from marketing.services import SOURCES
from marketing.tables import campaigns, demos, emails, leads, metadata, now


class NewEmail(BaseModel):
    to: str = Field(max_length=254, pattern=r"^[^@\s<>,;]+@[^@\s<>,;]+$")
    subject: str = Field(min_length=1, max_length=300)
    body: str = Field(max_length=100_000)
    priority: int | None = Field(None, ge=0, le=255)  # e.g. a password reset: above 10


class NewBatch(BaseModel):
    subject: str = Field(min_length=1, max_length=300)
    message: str = Field(max_length=10_000)
    recipients: list[Recipient] = Field(min_length=1, max_length=1000)


class NewCampaign(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    subject: str = Field(min_length=1, max_length=300)  # $name, $company, $city
    body: str = Field(max_length=100_000)
    send_at: datetime | None = None


class NewScrape(BaseModel):
    query: str = Field(min_length=1, max_length=200)
    location: str = Field(min_length=1, max_length=100)
    sources: list[str] = Field(default_factory=lambda: list(SOURCES), min_length=1)
    max_results: int = Field(100, ge=1, le=1000)


def job_view(job: JobRecord) -> dict[str, Any]:
    return {"job_id": str(job.id), "type": job.type, "state": job.state.value,
            "queue": job.queue, "priority": job.priority, "attempt": job.attempt,
            "result": job.result, "error": job.error["message"] if job.error else None}


def create_api(crisper: Crisper | None = None) -> FastAPI:
    crisper = crisper or marketing_app.crisper
    crisper.store.create_all()
    metadata.create_all(crisper.store.engine)
    api = FastAPI(title="FlipTech Pro marketing platform")

    def row(table: Any, key: Any) -> Any:
        with crisper.store.read() as s:
            found = s.execute(select(table).where(table.c.id == key)).first()
        if found is None:
            raise HTTPException(404, f"not found: {key}")
        return found._asdict()

    def submit(type_: str, params: dict[str, Any]) -> dict[str, Any]:
        return job_view(crisper.jobs.get(crisper.submit(type_, params).id))

    @api.post("/emails", status_code=202)
    def send_email(body: NewEmail) -> dict[str, Any]:
        with crisper.store.transaction() as s:  # the row and its job, or neither
            eid = new_email(s, body.to, body.subject, body.body)
            request = replace(send_request(eid, None), priority=body.priority)
            crisper.submit_many([request], session=s)
        return row(emails, eid)

    @api.post("/emails/batch", status_code=202)
    def send_batch(body: NewBatch) -> dict[str, Any]:
        return submit("email.send_batch_emails", {
            "recipients": [r.model_dump() for r in body.recipients],
            "values": {"subject": body.subject, "message": body.message}})

    @api.post("/emails/test", status_code=202)
    def send_test(to: str) -> dict[str, Any]:
        return submit("email.send_test_email", {"to": to})

    @api.get("/emails/{email_id}")
    def read_email(email_id: uuid.UUID) -> dict[str, Any]:
        return row(emails, email_id)

    @api.post("/campaigns", status_code=201)
    def create_campaign(body: NewCampaign) -> dict[str, Any]:
        cid = uuid.uuid4()
        with crisper.store.transaction() as s:
            s.execute(campaigns.insert().values(
                id=cid, status="scheduled" if body.send_at else "draft", created_at=now(),
                recipients=0, sent=0, failed=0, **body.model_dump()))
        return row(campaigns, cid)

    @api.get("/campaigns/{campaign_id}")
    def read_campaign(campaign_id: uuid.UUID) -> dict[str, Any]:
        return row(campaigns, campaign_id)

    for action in ("launch", "pause", "resume"):
        api.add_api_route(f"/campaigns/{{campaign_id}}/{action}", _campaign_action(
            crisper, row, action), methods=["POST"], status_code=202)

    @api.post("/scrapes", status_code=202)
    def scrape(body: NewScrape) -> dict[str, Any]:
        unknown = sorted(set(body.sources) - set(SOURCES))
        if unknown:
            raise HTTPException(422, f"unknown sources {unknown}; known: {list(SOURCES)}")
        view = multi_source_workflow(crisper, body.query, body.location, body.sources,
                                     body.max_results)
        return {"workflow_id": str(view.id), "status": view.status}

    @api.get("/scrapes/{workflow_id}")
    def read_scrape(workflow_id: uuid.UUID) -> dict[str, Any]:
        try:
            view = crisper.workflows.get(workflow_id)
        except WorkflowNotFound:
            raise HTTPException(404, f"no scrape {workflow_id}") from None
        merge = view.node("merge")
        return {"workflow_id": str(view.id), "status": view.status,
                "sources": {n.node: n.state.value for n in view.nodes if n.node != "merge"},
                "merge": job_view(crisper.jobs.get(merge.id))}

    @api.get("/leads")
    def list_leads(limit: int = 100) -> list[dict[str, Any]]:
        with crisper.store.read() as s:
            rows = s.execute(select(leads).order_by(leads.c.id).limit(min(max(limit, 1), 1000)))
            return [r._asdict() for r in rows]

    @api.post("/leads/{lead_id}/analyze", status_code=202)
    def analyze(lead_id: int) -> dict[str, Any]:
        row(leads, lead_id)
        return submit("ai.analyze_lead", {"lead_id": lead_id})

    @api.post("/demos", status_code=202)
    def create_demo(lead_id: int) -> dict[str, Any]:
        row(leads, lead_id)
        with crisper.store.transaction() as s:  # the demo row and its workflow together
            demo_id, view = demo_workflow(crisper, lead_id, s)
        return {"demo_id": str(demo_id), "workflow_id": str(view.id)}

    @api.get("/demos/{demo_id}")
    def read_demo(demo_id: uuid.UUID) -> dict[str, Any]:
        return row(demos, demo_id)

    @api.get("/jobs/{job_id}")
    def read_job(job_id: str) -> dict[str, Any]:
        try:
            return job_view(crisper.jobs.get(job_id))
        except JobNotFound:
            raise HTTPException(404, f"no job {job_id}") from None

    return api


def _campaign_action(crisper: Crisper, row: Any, action: str) -> Any:
    def route(campaign_id: uuid.UUID) -> dict[str, Any]:
        row(campaigns, campaign_id)
        return job_view(crisper.jobs.get(crisper.submit(
            f"campaign.{action}_campaign_async", {"campaign_id": str(campaign_id)}).id))

    route.__name__ = f"{action}_campaign"
    return route
