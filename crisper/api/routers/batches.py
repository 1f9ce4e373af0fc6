"""/v1/batches: submit many jobs as one, follow their counters (also live), cancel, retry."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from crisper.api.auth import AppDep, Reader, Writer
from crisper.api.problems import responses
from crisper.api.schemas import BulkAnswer, Job
from crisper.batches import MAX_BATCH, Callback
from crisper.bodies import Batch, SubmitBody
from crisper.service import SubmitRequest
from crisper.watch import watch_batch

router = APIRouter(prefix="/v1/batches", tags=["batches"],
                   responses=responses(401, 403, 500, 503))


class CallbackBody(BaseModel):
    url: str | None = Field(None, max_length=2000, description="a signed POST of the summary")
    job: dict[str, Any] | None = Field(None, description='{"type", "params", "queue"?}')


class BatchBody(BaseModel):
    jobs: list[SubmitBody] = Field(min_length=1, max_length=MAX_BATCH)
    description: str | None = Field(None, max_length=500)
    callbacks: dict[str, CallbackBody] = Field(
        default_factory=dict, description="success, complete and/or death")


def _request(body: SubmitBody) -> SubmitRequest:
    return SubmitRequest(type=body.type, params=body.params, queue=body.queue,
                         priority=body.priority, delay=body.delay, run_at=body.run_at,
                         hold=body.hold, tags=body.tags, metadata=body.metadata,
                         max_attempts=body.max_attempts, callback_url=body.callback_url)


@router.post("", status_code=201, response_model=Batch, responses=responses(400, 413, 422))
def submit(body: BatchBody, crisper: AppDep, who: Writer) -> Batch:
    """Submit the jobs as one batch, in one transaction."""
    callbacks = {k: Callback(url=c.url, job=c.job) for k, c in body.callbacks.items()}
    return Batch.of(crisper.batches.submit([_request(j) for j in body.jobs], tenant=who.tenant,
                                           description=body.description, callbacks=callbacks))


@router.get("", response_model=list[Batch])
def list_batches(crisper: AppDep, who: Reader,
                 limit: int = Query(50, ge=1, le=500)) -> list[Batch]:
    return [Batch.of(b) for b in crisper.batches.list_batches(who.tenant, limit)]


@router.get("/{batch_id}", response_model=Batch, responses=responses(404))
def get_batch(batch_id: str, crisper: AppDep, who: Reader) -> Batch:
    return Batch.of(crisper.batches.get(batch_id, who.tenant))


@router.get("/{batch_id}/jobs", response_model=list[Job], responses=responses(404))
def batch_jobs(batch_id: str, crisper: AppDep, who: Reader,
               before: Annotated[str | None, Query(max_length=40)] = None,
               limit: int = Query(100, ge=1, le=1000)) -> list[Job]:
    """The batch's jobs, newest first; `before` (a job id) gives the next page."""
    return [Job.of(r) for r in crisper.batches.jobs(batch_id, who.tenant, limit, before)]


@router.post("/{batch_id}/cancel", response_model=BulkAnswer, responses=responses(404))
def cancel(batch_id: str, crisper: AppDep, who: Writer) -> BulkAnswer:
    """Cancel every job of the batch still waiting or running."""
    return BulkAnswer.of(crisper.batches.cancel(batch_id, who.tenant))


@router.post("/{batch_id}/retry", response_model=BulkAnswer, responses=responses(404))
def retry(batch_id: str, crisper: AppDep, who: Writer) -> BulkAnswer:
    """Run the batch's failed and cancelled jobs again."""
    return BulkAnswer.of(crisper.batches.retry(batch_id, who.tenant))


@router.get("/{batch_id}/stream", response_class=StreamingResponse, responses={
    200: {"description": "Server-Sent Events: the counters each time they change, until "
          "every job has ended", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
    **responses(404)})
def stream(batch_id: str, crisper: AppDep, who: Reader) -> StreamingResponse:
    """Live progress: a `progress` event each time the counters change; ends when done."""
    first = crisper.batches.get(batch_id, who.tenant)  # 404 before the stream starts
    return StreamingResponse(watch_batch(crisper.batches, first, who.tenant),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
