"""The product importer's HTTP API: the write-up's task endpoints, and the upload it lacked.

    POST   /api/v1/products/import      upload a CSV (multipart `file`): 202 {task_id, status}
    GET    /api/v1/celery/workers       the workers: {status, workers: {active, stats,
                                        registered_tasks}}
    POST   /api/v1/celery/test          submit the test task: {task_id, status, message}
    GET    /api/v1/celery/task/{id}     {task_id, status, result, error, progress}; 404 for an
                                        id it never issued or whose result has expired
    DELETE /api/v1/celery/task/{id}     revoke: a waiting task is cancelled at once, a running
                                        import stops at its next chunk (killed after the
                                        grace period otherwise) and rolls back; 409 once ended

`status` keeps the Celery names a client of the write-up reads: PENDING, STARTED, RETRY,
SUCCESS, FAILURE, REVOKED; `state` is Crisper's own.

Run it: CRISPER_APP=product_importer.jobs uvicorn --factory product_importer.api:create_api
(from examples/), with `crisper worker -Q imports,default` and `crisper scheduler` beside it.
(No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time.)
"""

from typing import Any

from fastapi import FastAPI, HTTPException, UploadFile

from crisper import Crisper, InvalidTransition, JobNotFound, JobState
from crisper.contrib.csv_source import ImportFileError, save_upload
from crisper.records import JobRecord
from product_importer import jobs

STATUS = {JobState.HELD: "PENDING", JobState.SCHEDULED: "PENDING", JobState.QUEUED: "PENDING",
          JobState.RETRYING: "RETRY", JobState.RUNNING: "STARTED",
          JobState.SUCCEEDED: "SUCCESS", JobState.FAILED: "FAILURE",
          JobState.CANCELLED: "REVOKED"}
OURS = (jobs.IMPORT, jobs.TEST, jobs.CLEANUP)


def task_view(job: JobRecord) -> dict[str, Any]:
    return {"task_id": str(job.id), "name": job.type, "status": STATUS[job.state],
            "state": job.state.value,
            "result": job.result if job.state is JobState.SUCCEEDED else None,
            "error": job.error["message"] if job.error else
            ("revoked" if job.state is JobState.CANCELLED else None),
            "progress": {"current": job.progress_current, "total": job.progress_total,
                         "percent": job.percent, "message": job.progress_message},
            "attempt": job.attempt, "max_attempts": job.max_attempts}


def workers_view(crisper: Crisper) -> dict[str, Any]:
    """The write-up's `inspect` answer, from the workers' recorded heartbeats (no broadcast
    that times out when the broker is slow)."""
    seen = crisper.list_workers()
    return {"status": "success", "workers": {
        "active": {w.name: [str(j) for j in w.running_jobs] for w in seen
                   if w.status == "alive"},
        "stats": {w.name: {"status": w.status, "host": w.host, "pid": w.pid,
                           "queues": w.queues, "concurrency": w.concurrency,
                           "started_at": w.started_at.isoformat(),
                           "last_heartbeat_at": w.last_heartbeat_at.isoformat()}
                  for w in seen},
        "registered_tasks": crisper.registry.names()}}


def create_api(crisper: Crisper | None = None, config: jobs.Config | None = None) -> FastAPI:
    crisper = crisper or jobs.crisper
    config = config or jobs.Config.from_env()
    crisper.store.create_all()
    jobs.metadata.create_all(crisper.store.engine)
    api = FastAPI(title="Product importer")

    def ours(task_id: str) -> JobRecord:
        try:
            job = crisper.jobs.get(task_id)
        except JobNotFound:
            raise HTTPException(404, f"no task {task_id}") from None
        if job.type not in OURS:
            raise HTTPException(404, f"no task {task_id}")
        return job

    @api.post("/api/v1/products/import", status_code=202)
    def upload(file: UploadFile) -> dict[str, Any]:
        try:
            path = save_upload(config.import_dir, file.file, jobs.MAX_BYTES)
        except ImportFileError as exc:
            raise HTTPException(413, str(exc)) from None
        job = crisper.submit(jobs.IMPORT, {"path": path})
        return {"task_id": str(job.id), "status": "submitted", "path": path}

    @api.get("/api/v1/celery/workers")
    def workers() -> dict[str, Any]:
        return workers_view(crisper)

    @api.post("/api/v1/celery/test")
    def test() -> dict[str, Any]:
        job = crisper.submit(jobs.TEST)
        return {"task_id": str(job.id), "status": "submitted",
                "message": "Test task has been submitted to the worker"}

    @api.get("/api/v1/celery/task/{task_id}")
    def task(task_id: str) -> dict[str, Any]:
        return task_view(ours(task_id))

    @api.delete("/api/v1/celery/task/{task_id}", status_code=202)
    def revoke(task_id: str) -> dict[str, Any]:
        job = ours(task_id)
        try:
            job = crisper.jobs.cancel(job.id)
        except InvalidTransition as exc:
            raise HTTPException(409, f"task {task_id} has already ended: {exc}") from None
        return {**task_view(job), "message": "revoked" if job.state is JobState.CANCELLED
                else "asked to stop: it stops at its next chunk, by force after the grace "
                     "period, and its changes are rolled back"}

    return api
