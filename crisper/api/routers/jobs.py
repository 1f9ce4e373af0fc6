"""/v1/jobs: submit, read, list, history, logs, live stream, lifecycle actions and bulk actions."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from crisper.api.auth import AppDep, Reader, Writer
from crisper.api.problems import responses
from crisper.api.schemas import BulkAnswer, BulkBody, Event, Job, JobPage, LogLine
from crisper.bodies import KEY, NO_NUL, Name, SubmitBody, Tag, Timestamp
from crisper.group_commit import GroupCommit
from crisper.metadata import parse_pairs
from crisper.service import SubmitRequest
from crisper.states import JobState
from crisper.store import utcnow
from crisper.store.jobs import JobFilter
from crisper.watch import Cursor, JobWatch

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=responses(401, 403, 500, 503))
JobId = Annotated[str, "a job id (UUID); any other text is simply not found"]


@router.post("", status_code=202, response_model=Job,
             responses={200: {"model": Job, "description": "an idempotent replay"},
                        **responses(400, 409, 413, 422)})
async def submit(body: SubmitBody, request: Request, response: Response, who: Writer,
                 idempotency_key: Annotated[str | None, Header(min_length=1, max_length=300,
                                                               pattern=KEY)] = None
                 ) -> Job:
    """Submit a job: 202 with the new job, or 200 with the first one for a repeated key.

    The key may come as the Idempotency-Key header or the idempotency_key field (which wins).
    Answered once the job's row is committed; concurrent submits share commits.
    """
    key = body.idempotency_key or idempotency_key
    asked_at = utcnow()
    record = await _group_commit(request).submit(SubmitRequest(
        type=body.type, params=body.params, queue=body.queue, priority=body.priority,
        delay=body.delay, run_at=body.run_at, hold=body.hold, idempotency_key=key,
        tags=body.tags, metadata=body.metadata, tenant=who.tenant,
        max_attempts=body.max_attempts,
        unique_key=body.unique_key, on_duplicate=body.on_duplicate,
        callback_url=body.callback_url,
        soft_time_limit=body.soft_time_limit, time_limit=body.time_limit,
    ))
    if record.created_at < asked_at:  # it existed before this request: a replay
        response.status_code = 200
    response.headers["Location"] = f"/v1/jobs/{record.id}"
    return Job.of(record)


def _group_commit(request: Request) -> GroupCommit:
    """This server's commit groups, built on the first submit (the event loop's thread)."""
    groups: GroupCommit | None = request.app.state.group_commit
    if groups is None:
        groups = request.app.state.group_commit = GroupCommit(request.app.state.crisper.jobs)
    return groups


@router.get("", response_model=JobPage, responses=responses(422))
def list_jobs(
    request: Request, crisper: AppDep, who: Reader,
    state: Annotated[list[JobState], Query(description="repeat for several")] = [],  # noqa: B006
    type: Annotated[list[Name], Query()] = [],  # noqa: B006
    queue: Annotated[list[Name], Query()] = [],  # noqa: B006
    tag: Tag | None = None,
    meta: Annotated[list[str], Query(
        description="key:value, exact; repeat for several (all must match)")] = [],  # noqa: B006
    created_after: Timestamp | None = None,
    created_before: Timestamp | None = None,
    finished_after: Timestamp | None = None,
    finished_before: Timestamp | None = None,
    before: Annotated[uuid.UUID | None, Query(description="cursor: jobs older than this")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JobPage:
    """Jobs newest first, a page at a time (keyset on the time-ordered id)."""
    metadata = parse_pairs(meta, ":", field="meta")
    page = crisper.list_jobs(state=state, type=type, queue=queue, tenant=who.tenant, tag=tag,
                             metadata=metadata,
                             created_after=created_after, created_before=created_before,
                             finished_after=finished_after, finished_before=finished_before,
                             before=before, limit=limit)
    cursor = page.next_cursor
    next_url = str(request.url.include_query_params(before=str(cursor))) if cursor else None
    return JobPage(items=[Job.of(r) for r in page.items], next_cursor=cursor, next=next_url)


@router.get("/{job_id}", response_model=Job, responses=responses(404))
def get_job(job_id: JobId, crisper: AppDep, who: Reader) -> Job:
    return Job.of(crisper.jobs.get(job_id, who.tenant))


@router.get("/{job_id}/events", response_model=list[Event], responses=responses(404))
def job_events(job_id: JobId, crisper: AppDep, who: Reader) -> list[Event]:
    """Every state change, oldest first, with its time and reason."""
    return [Event.of(e) for e in crisper.jobs.events(job_id, who.tenant)]


@router.get("/{job_id}/logs", response_model=list[LogLine], responses=responses(404, 422))
def job_logs(job_id: JobId, crisper: AppDep, who: Reader,
             after: Annotated[int, Query(ge=0, le=2**62, description="lines after this id")] = 0,
             limit: Annotated[int, Query(ge=1, le=5000)] = 1000) -> list[LogLine]:
    """Log lines the job wrote through ctx.logger, oldest first."""
    return [LogLine.of(x) for x in crisper.jobs.logs(job_id, who.tenant, after, limit)]


@router.get("/{job_id}/stream", response_class=StreamingResponse, responses={
    200: {"description": "Server-Sent Events: state, progress and log, until the final state",
          "content": {"text/event-stream": {"schema": {"type": "string"}}}},
    **responses(404)})
def stream(job_id: JobId, crisper: AppDep, who: Reader,
           last_event_id: Annotated[str | None, Header(max_length=100, pattern=NO_NUL)] = None
           ) -> StreamingResponse:
    """Live state changes, progress and log lines; ends after the final state.

    Each state and log event has an id; reconnect with Last-Event-ID to resume after it.
    """
    record = crisper.jobs.get(job_id, who.tenant)  # 404 before the stream starts
    watch = JobWatch(crisper.jobs, record.id, who.tenant, Cursor.parse(last_event_id),
                     crisper.settings.resolved_redis_url())
    return StreamingResponse(iter(watch), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/{job_id}/cancel", response_model=Job, responses={
    202: {"model": Job, "description": "a running job was asked to stop"},
    **responses(404, 409)})
def cancel(job_id: JobId, response: Response, crisper: AppDep, who: Writer) -> Job:
    """Cancel: a waiting job is cancelled now (200); a running one is asked to stop (202)."""
    record = crisper.jobs.cancel(job_id, who.tenant)
    response.status_code = 200 if record.state is JobState.CANCELLED else 202
    return Job.of(record)


class RetryBody(BaseModel):
    params: dict[str, Any] | None = Field(None, description="run with these params instead "
                                                            "(a replay with edit)")


@router.post("/{job_id}/retry", status_code=202, response_model=Job,
             responses=responses(400, 404, 409, 413, 422))
def retry(job_id: JobId, crisper: AppDep, who: Writer, body: RetryBody | None = None) -> Job:
    """Run a finished job again, as a new series of attempts; with `params`, with those."""
    return Job.of(crisper.jobs.retry(job_id, who.tenant, body.params if body else None))


@router.post("/{job_id}/start", status_code=202, response_model=Job, responses=responses(404, 409))
def start(job_id: JobId, crisper: AppDep, who: Writer) -> Job:
    """Start a held job."""
    return Job.of(crisper.jobs.start(job_id, who.tenant))


def _bulk(action: str, body: BulkBody, crisper: AppDep, tenant: str) -> BulkAnswer:
    if body.ids is not None:
        f = JobFilter(ids=body.ids, tenant=tenant)
    else:
        assert body.filter is not None
        b = body.filter
        f = JobFilter(states=b.states, types=b.types, queues=b.queues, tenant=tenant, tag=b.tag,
                      created_after=b.created_after, created_before=b.created_before,
                      finished_after=b.finished_after, finished_before=b.finished_before)
    return BulkAnswer.of(crisper.jobs.bulk(action, f, body.limit))


@router.post("/cancel", response_model=BulkAnswer, responses=responses(400, 413, 422))
def bulk_cancel(body: BulkBody, crisper: AppDep, who: Writer) -> BulkAnswer:
    """Cancel many jobs, by ids or by a filter; answers how many changed and why others not."""
    return _bulk("cancel", body, crisper, who.tenant)


@router.post("/retry", response_model=BulkAnswer, responses=responses(400, 413, 422))
def bulk_retry(body: BulkBody, crisper: AppDep, who: Writer) -> BulkAnswer:
    """Retry many finished jobs, by ids or by a filter."""
    return _bulk("retry", body, crisper, who.tenant)
