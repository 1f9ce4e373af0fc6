"""Job pages: the filtered list with live state, bulk actions, the detail page, its live stream."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from crisper import reads
from crisper.dashboard.render import base_of, render
from crisper.dashboard.routes_pages import Reader, acting, crisper_of
from crisper.dashboard.timeline import attempts
from crisper.errors import InvalidRequest, InvalidTransition
from crisper.ids import parse_id
from crisper.metadata import parse_pairs
from crisper.records import JobRecord
from crisper.states import JobState, action_sources
from crisper.store import utcnow
from crisper.store.jobs import JobFilter
from crisper.watch import Cursor, JobWatch

router = APIRouter()
PAGE_SIZE = 50
LIVE_MAX = 100  # ids one live poll may ask about
SINCE = {"5m": timedelta(minutes=5), "1h": timedelta(hours=1), "24h": timedelta(days=1),
         "7d": timedelta(days=7)}
ACTIONS = {"cancel": "cancelled", "retry": "retried", "start": "started"}
NOTICES = (*ACTIONS, "submit")
LOG_LINES_SHOWN = 1000
FILTER_KEYS = ("state", "type", "queue", "since", "q", "tag", "meta", "before", "after")
MAX_META_FILTERS = 4  # pairs the form offers; the filter itself takes up to 16


@dataclass(frozen=True)
class ListQuery:
    """The jobs page's filters as the form shows them. `meta` holds "key:value" pairs, as
    GET /v1/jobs?meta= takes them; `q` is a job id (or, from older links, a tag)."""

    state: str = ""
    type: str = ""
    queue: str = ""
    since: str = ""
    q: str = ""
    tag: str = ""
    meta: tuple[str, ...] = ()

    def job_filter(self, tenant: str, now: datetime) -> JobFilter:
        """Indexed filters only, built as the API builds them (reads.job_filter): state, type,
        queue, a creation window, an exact id, tag or metadata pairs. InvalidRequest for a
        pair that is not valid metadata."""
        text = self.q.strip()
        job_id = parse_id(text) if text else None
        tag = self.tag.strip() or (text if text and job_id is None else "")
        f = reads.job_filter(
            state=self.state if self.state in JobState._value2member_map_ else (),
            type=self.type or (), queue=self.queue or (), tag=tag or None,
            metadata=parse_pairs([m for m in self.meta if m.strip()], ":", field="meta"),
            tenant=tenant, created_after=now - SINCE[self.since] if self.since in SINCE else None)
        return replace(f, ids=[job_id] if job_id else [])

    def link(self, **changes: str) -> str:
        given = {**self.__dict__, **changes, "meta": [m for m in self.meta if m.strip()]}
        values = {k: v for k, v in given.items() if v}
        return "?" + urlencode(values, doseq=True) if values else "?"

    def meta_inputs(self) -> list[str]:
        """The pairs shown in the form, and one empty input for another."""
        shown = [m for m in self.meta if m.strip()][:MAX_META_FILTERS]
        return shown + ([""] if len(shown) < MAX_META_FILTERS else [])


def allowed_actions(state: JobState) -> list[str]:
    """The lifecycle actions a job in `state` offers, as the transition table allows."""
    return [a for a, name in ACTIONS.items() if state in action_sources(name)]


def job_actions(job: JobRecord) -> list[str]:
    """An observed Celery task offers only cancel (sent as Celery's revoke) while active."""
    if job.source == "observed":
        return [] if job.state.is_terminal else ["cancel"]
    return allowed_actions(job.state)


@router.get("/jobs")
def jobs_page(request: Request, who: Reader, state: str = "", type: str = "", queue: str = "",
              since: str = "", q: Annotated[str, Query(max_length=300)] = "",
              tag: Annotated[str, Query(max_length=300)] = "",
              meta: Annotated[list[str], Query()] = [],  # noqa: B006
              before: str | None = None, after: str | None = None, done: str | None = None,
              changed: int = 0, skipped: int = 0) -> Response:
    crisper = crisper_of(request)
    query = ListQuery(state, type, queue, since, q, tag, tuple(m[:300] for m in meta[:16]))
    cursor = parse_id(before) if before else None
    upward = parse_id(after) if after and not cursor else None
    try:
        f = query.job_filter(who.tenant, utcnow())
    except InvalidRequest as exc:  # a metadata pair the filter cannot take: say so, list none
        return _jobs_list(request, who, crisper, query, [], filter_error=str(exc))
    # One row more than a page tells whether the list goes on in the direction read; the
    # other direction goes on past any cursor.
    found = crisper.jobs.list_jobs(f, before=cursor, after=upward, limit=PAGE_SIZE + 1)
    more = len(found) > PAGE_SIZE
    if more:
        found = found[1:] if upward else found[:-1]
    older = query.link(before=str(found[-1].id)) if found and (more or upward) else None
    newer = query.link(after=str(found[0].id)) if found and (cursor or (upward and more)) else None
    return _jobs_list(request, who, crisper, query, found, older=older, newer=newer,
                      first=query.link() if cursor or upward else None,
                      current_before=str(cursor) if cursor else "",
                      current_after=str(upward) if upward else "",
                      done=done if done in ACTIONS else None, changed=changed, skipped=skipped)


def _jobs_list(request: Request, who: Any, crisper: Any, query: ListQuery, found: list[Any],
               **page: Any) -> Response:
    queues = sorted({jt.options.queue for jt in crisper.registry} | ({query.queue} - {""}))
    values = {"older": None, "newer": None, "first": None, "current_before": "",
              "current_after": "", "done": None, "changed": 0, "skipped": 0,
              "filter_error": None, **page}
    return render(request, "jobs.html", who, status=422 if values["filter_error"] else 200,
                  page="jobs", jobs=found, query=query, types=crisper.registry.names(),
                  queues=queues, since_choices=list(SINCE), **values)


@router.get("/live/jobs")
def live_jobs(request: Request, who: Reader, id: Annotated[list[str], Query()] = []  # noqa: B006
              ) -> JSONResponse:
    """State and progress of the jobs a page shows (one primary-key lookup), for polling."""
    ids = [i for i in (parse_id(x) for x in id[:LIVE_MAX]) if i is not None]
    records = crisper_of(request).jobs.list_jobs(JobFilter(ids=ids, tenant=who.tenant),
                                                 limit=LIVE_MAX) if ids else []
    return JSONResponse([
        {"id": str(r.id), "state": r.state.value, "percent": r.percent,
         "message": r.progress_message, "current": r.progress_current,
         "total": r.progress_total, "attempt": r.attempt, "max_attempts": r.max_attempts}
        for r in records])


@router.post("/jobs/bulk")
async def bulk(request: Request, action: Annotated[str, Form()],
               ids: Annotated[list[str], Form()] = [],  # noqa: B006
               back: Annotated[str, Form(max_length=2000)] = "") -> Response:
    """Cancel or retry the selected jobs, then show the same filtered page with the counts."""
    who = await acting(request, "write")
    if action not in ("cancel", "retry"):
        return Response("unknown bulk action", status_code=400, media_type="text/plain")
    parsed = [i for i in (parse_id(x) for x in ids[:PAGE_SIZE * 10]) if i is not None]
    changed = skipped = 0
    if parsed:
        result = await run_in_threadpool(  # hundreds of jobs: off the event loop
            crisper_of(request).jobs.bulk, action, JobFilter(ids=parsed, tenant=who.tenant),
            limit=len(parsed))
        changed, skipped = result.changed, result.skipped
    kept = {k: v for k, v in parse_qs(back.lstrip("?")).items() if k in FILTER_KEYS}
    query = urlencode({**kept, "done": action, "changed": changed, "skipped": skipped},
                      doseq=True)
    return RedirectResponse(f"{base_of(request)}/jobs?{query}", status_code=303)


def _job_page(request: Request, who: Any, job_id: str, status: int = 200,
              error: str | None = None, done: str | None = None) -> Response:
    crisper = crisper_of(request)
    # History first, then the job: a change between the two reads is then sent again by the
    # stream (one extra reload), instead of falling behind the cursor and never shown.
    # (events() answers JobNotFound for an unknown id or another tenant's job.)
    events = crisper.jobs.events(job_id, who.tenant)
    lines = crisper.jobs.logs(job_id, who.tenant, limit=LOG_LINES_SHOWN)
    job = crisper.jobs.get(job_id, who.tenant)
    cursor = Cursor(events[-1].id if events else 0, lines[-1].id if lines else 0)
    return render(request, "job.html", who, status=status, page="jobs", job=job,
                  events=events, attempts=attempts(events), lines=lines, cursor=str(cursor),
                  actions=job_actions(job), error=error,
                  deliveries=crisper.webhooks.deliveries(who.tenant, job_id=job.id, limit=20),
                  done=done if done in (*NOTICES, "redeliver") else None, now=utcnow())


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str, who: Reader, done: str | None = None) -> Response:
    return _job_page(request, who, job_id, done=done)


@router.post("/jobs/{job_id}/{action}")
async def job_action(request: Request, job_id: str, action: str) -> Response:
    who = await acting(request, "write")
    service = crisper_of(request).jobs
    method = {"cancel": service.cancel, "retry": service.retry, "start": service.start}.get(action)
    if method is None:
        return Response("unknown action", status_code=404, media_type="text/plain")
    try:
        record = await run_in_threadpool(method, job_id, who.tenant)
    except InvalidTransition as exc:
        return await run_in_threadpool(_job_page, request, who, job_id, 409, str(exc))
    return RedirectResponse(f"{base_of(request)}/jobs/{record.id}?done={action}", status_code=303)


@router.get("/jobs/{job_id}/stream")
def job_stream(request: Request, job_id: str, who: Reader, after: str | None = None
               ) -> StreamingResponse:
    """The same live stream as /v1/jobs/{id}/stream, for the session's tenant."""
    crisper = crisper_of(request)
    job = crisper.jobs.get(job_id, who.tenant)
    cursor = Cursor.parse(request.headers.get("last-event-id") or after)
    watch = JobWatch(crisper.jobs, job.id, who.tenant, cursor,
                     crisper.settings.resolved_redis_url())
    return StreamingResponse(iter(watch), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

