"""The summarization service's HTTP API, with the write-up's endpoints and task states.

    PUT  /summarization/sessions/{id}             store a session's transcript (the write-up's
                                                  sessions live in its own database)
    POST /summarization/summarize-session         202 {task_id, status: INITIATED, message}
    POST /summarization/summarize-profile         202, the same
    GET  /summarization/task-status/{task_id}     PENDING | STARTED | RETRY | SUCCESS |
                                                  FAILURE | REVOKED, with the summary or the
                                                  error; 404 for an id it never issued
    GET  /summarization/failed                    the dead-letter queue: failed tasks, newest
                                                  first, with their params and errors
    POST /summarization/failed/{task_id}/replay   run it again, optionally with edited params

Run it: CRISPER_APP=summarization.jobs uvicorn --factory summarization.api:create_api (from
examples/), with `crisper worker -Q summarization` and `crisper scheduler` beside it (the
scheduler times the retries and sends the completion webhooks).
(No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time.)
"""

from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from crisper import Crisper, InvalidParams, InvalidTransition, JobNotFound, JobState
from crisper.errors import InvalidRequest
from crisper.records import JobRecord
from summarization import jobs

STATUS = {JobState.HELD: "PENDING", JobState.SCHEDULED: "PENDING", JobState.QUEUED: "PENDING",
          JobState.WAITING: "PENDING", JobState.RUNNING: "STARTED", JobState.RETRYING: "RETRY",
          JobState.SUCCEEDED: "SUCCESS", JobState.FAILED: "FAILURE",
          JobState.CANCELLED: "REVOKED", JobState.SKIPPED: "REVOKED"}
TYPES = (jobs.SESSION, jobs.PROFILE)


class Transcript(BaseModel):
    candidate_id: jobs.Id
    transcript: str = Field(min_length=1, max_length=200_000)


class Callback(BaseModel):
    callback_url: str | None = Field(None, max_length=2000,
                                     description="POSTed the task's final record when it ends")


class SessionRequest(Callback):
    session_id: jobs.Id
    candidate_id: jobs.Id
    mode: jobs.Mode = "SELF_REPORT"


class ProfileRequest(Callback):
    candidate_id: jobs.Id


class Replay(BaseModel):
    params: dict[str, Any] | None = Field(None, description="edited params (replay with edit)")


def status_of(job: JobRecord) -> dict[str, Any]:
    status = STATUS[job.state]
    error = job.error["message"] if job.error else None
    return {"task_id": str(job.id), "status": status, "message": f"Task status: {status}",
            "error": error if status in ("FAILURE", "RETRY", "REVOKED") else None,
            "result": job.result if status == "SUCCESS" else None,
            "attempt": job.attempt, "max_attempts": job.max_attempts,
            "retry_at": job.run_at.isoformat() if status == "RETRY" and job.run_at else None}


def create_api(crisper: Crisper | None = None, config: jobs.Config | None = None) -> FastAPI:
    crisper = crisper or jobs.crisper
    config = config or jobs.Config.from_env()
    crisper.store.create_all()
    jobs.metadata.create_all(crisper.store.engine)
    api = FastAPI(title="Summarization service")
    add_request_routes(api, crisper, config)
    add_dead_letter_routes(api, crisper)
    return api


def ours(crisper: Crisper, task_id: str) -> JobRecord:
    """A task of this service, or 404 (an unknown id, or a job of some other type)."""
    try:
        job = crisper.jobs.get(task_id)
    except JobNotFound:
        job = None
    if job is None or job.type not in TYPES:
        raise HTTPException(404, f"task {task_id} not found")
    return job


def add_request_routes(api: FastAPI, crisper: Crisper, config: jobs.Config) -> None:
    """The write-up's endpoints: accept with 202, then poll."""

    def accept(type_: str, params: dict[str, Any], callback: str | None, what: str
               ) -> dict[str, Any]:
        try:
            job = crisper.submit(type_, params, callback_url=callback or config.callback_url)
        except (InvalidParams, InvalidRequest) as exc:
            raise HTTPException(422, str(exc)) from None
        return {"task_id": str(job.id), "status": "INITIATED",
                "message": f"{what} summarization task queued. Task ID: {job.id}"}

    @api.put("/summarization/sessions/{session_id}")
    def store_session(session_id: jobs.Id, body: Transcript) -> dict[str, str]:
        with crisper.store.transaction() as s:
            s.execute(jobs.sessions.delete().where(jobs.sessions.c.id == session_id))
            s.execute(jobs.sessions.insert().values(id=session_id, **body.model_dump()))
        return {"session_id": session_id, "candidate_id": body.candidate_id}

    @api.post("/summarization/summarize-session", status_code=202)
    def summarize_session(body: SessionRequest) -> dict[str, Any]:
        params = body.model_dump(exclude={"callback_url"})
        return accept(jobs.SESSION, params, body.callback_url, "Session")

    @api.post("/summarization/summarize-profile", status_code=202)
    def summarize_profile(body: ProfileRequest) -> dict[str, Any]:
        return accept(jobs.PROFILE, {"candidate_id": body.candidate_id}, body.callback_url,
                      "Profile")

    @api.get("/summarization/task-status/{task_id}")
    def task_status(task_id: str) -> dict[str, Any]:
        return status_of(ours(crisper, task_id))


def add_dead_letter_routes(api: FastAPI, crisper: Crisper) -> None:
    """The failed-jobs view as the dead-letter queue, with replay (and replay with edit)."""

    @api.get("/summarization/failed")
    def failed(limit: int = 50) -> list[dict[str, Any]]:
        page = crisper.list_jobs(state="failed", type=TYPES, limit=min(max(limit, 1), 500))
        return [{"task_id": str(j.id), "type": j.type, "params": j.params,
                 "error": j.error["message"] if j.error else None,
                 "error_type": j.error["type"] if j.error else None, "attempts": j.attempt,
                 "failed_at": j.finished_at.isoformat() if j.finished_at else None}
                for j in page.items]

    @api.post("/summarization/failed/{task_id}/replay", status_code=202)
    def replay(task_id: str, body: Replay | None = None) -> dict[str, Any]:
        job = ours(crisper, task_id)
        if job.state not in (JobState.FAILED, JobState.CANCELLED):
            raise HTTPException(409, f"task {task_id} is {STATUS[job.state]}; only failed "
                                     "and revoked tasks are replayed")
        try:
            again = crisper.jobs.retry(job.id, params=body.params if body else None)
        except InvalidParams as exc:
            raise HTTPException(422, str(exc)) from None
        except InvalidTransition as exc:
            raise HTTPException(409, str(exc)) from None
        return status_of(again)
