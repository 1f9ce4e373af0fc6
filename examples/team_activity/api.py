"""The team-activity HTTP API, with the write-up's endpoints.

    POST /api/activities/generate-custom   reserve a quota unit and submit the job, in one
                                           transaction: {"success", "job_id", "status"}
    GET  /api/jobs/{job_id}                pending | processing | completed (activities) |
                                           failed (error); 404 for an id it never issued
    PUT  /api/organizations/{id}/quota     set an organization's monthly limit (a paid plan)
    GET  /api/organizations/{id}/quota     its limit and what is used

Run it: CRISPER_APP=team_activity.jobs uvicorn --factory team_activity.api:create_api (from
examples/), with `crisper worker -Q generation` and `crisper scheduler` beside it.
(No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time,
and they name locals.)
"""

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import create_engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from crisper import Crisper, JobNotFound, JobState
from crisper.contrib.fastapi import Submitter, submitter
from crisper.store.db import normalize_url
from team_activity import jobs

STATUS = {JobState.HELD: "pending", JobState.SCHEDULED: "pending", JobState.QUEUED: "pending",
          JobState.RETRYING: "pending", JobState.RUNNING: "processing",
          JobState.SUCCEEDED: "completed", JobState.FAILED: "failed",
          JobState.CANCELLED: "failed"}


class GenerationRequest(BaseModel):
    team_id: str = Field(min_length=1, max_length=64)
    organization_id: str = Field(min_length=1, max_length=64)
    requirements: str = Field("", max_length=2000)


class Quota(BaseModel):
    monthly_limit: int = Field(ge=0, le=1_000_000)


def create_api(crisper: Crisper | None = None) -> FastAPI:
    crisper = crisper or jobs.crisper
    # The app's own tables live in Crisper's database, so a request's session can hold both
    # its quota update and its job.
    engine = create_engine(normalize_url(crisper.settings.resolved_database_url()))
    crisper.store.create_all()
    jobs.metadata.create_all(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    api = FastAPI(title="Team activities")

    def get_session() -> Iterator[Session]:
        with sessions() as session:
            yield session

    SessionDep = Annotated[Session, Depends(get_session)]
    SubmitDep = Annotated[Submitter, Depends(submitter(crisper, get_session))]

    @api.post("/api/activities/generate-custom")
    def generate_custom(body: GenerationRequest, session: SessionDep, submit: SubmitDep
                        ) -> dict[str, Any]:
        q = jobs.quotas.c
        reserved = session.execute(
            update(jobs.quotas).where(q.organization_id == body.organization_id,
                                      q.used < q.monthly_limit).values(used=q.used + 1))
        if not reserved.rowcount:  # type: ignore[attr-defined]
            plan = session.scalar(select(q.monthly_limit)
                                  .where(q.organization_id == body.organization_id))
            session.rollback()
            if plan is None:
                raise HTTPException(402, "custom activities need a paid plan")
            raise HTTPException(429, f"the monthly quota of {plan} is used up")
        job = submit(jobs.GENERATE, body.model_dump())
        session.commit()  # the reservation and the job, or neither
        return {"success": True, "job_id": str(job.id), "status": "pending"}

    @api.get("/api/jobs/{job_id}")
    def poll(job_id: str) -> dict[str, Any]:
        try:
            job = crisper.jobs.get(job_id)
        except JobNotFound:
            raise HTTPException(404, f"no job {job_id}") from None
        if job.type != jobs.GENERATE:
            raise HTTPException(404, f"no job {job_id}")
        answer: dict[str, Any] = {"job_id": str(job.id), "status": STATUS[job.state]}
        if job.state is JobState.SUCCEEDED:
            answer["activities"] = job.result["activities"]
        elif job.state in (JobState.FAILED, JobState.CANCELLED):
            answer["error"] = job.error["message"] if job.error else "cancelled"
        return answer

    @api.put("/api/organizations/{organization_id}/quota")
    def set_quota(organization_id: str, body: Quota, session: SessionDep) -> dict[str, Any]:
        q = jobs.quotas.c
        changed = session.execute(update(jobs.quotas).where(q.organization_id == organization_id)
                                  .values(monthly_limit=body.monthly_limit))
        if not changed.rowcount:  # type: ignore[attr-defined]
            session.execute(jobs.quotas.insert().values(
                organization_id=organization_id, monthly_limit=body.monthly_limit, used=0))
        session.commit()
        return read_quota(organization_id, session)

    @api.get("/api/organizations/{organization_id}/quota")
    def read_quota(organization_id: str, session: SessionDep) -> dict[str, Any]:
        row = session.execute(select(jobs.quotas).where(
            jobs.quotas.c.organization_id == organization_id)).first()
        if row is None:
            raise HTTPException(404, f"organization {organization_id} has no plan")
        return {"organization_id": organization_id, "monthly_limit": row.monthly_limit,
                "used": row.used}

    return api
