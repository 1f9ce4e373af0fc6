"""Operator pages: the overview, queues and workers, and the failed jobs grouped by error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from crisper import insights, monitor
from crisper.app import Crisper
from crisper.dashboard import session as sessions
from crisper.dashboard.charts import activity_chart
from crisper.dashboard.render import base_of, render
from crisper.dashboard.session import Viewer

router = APIRouter()


def reader(request: Request) -> Viewer:
    """The logged-in viewer, who needs the read scope to see anything."""
    who = sessions.viewer(request)
    who.principal.require("read")
    return who


def crisper_of(request: Request) -> Crisper:
    crisper: Crisper = request.app.state.crisper
    return crisper


async def acting(request: Request, scope: str) -> Viewer:
    """The viewer behind a state-changing request: its CSRF token first, then its scope.

    The async POST handlers call the synchronous core only through run_in_threadpool: the
    dashboard shares the API's event loop, which must never wait on the database.
    """
    who = await run_in_threadpool(sessions.viewer, request)  # reads the key from the store
    await sessions.check_csrf(request, who.csrf)
    who.principal.require(scope)
    return who


Reader = Annotated[Viewer, Depends(reader)]


@dataclass(frozen=True)
class QueueRow:
    name: str
    depth: int
    running: int
    waiting: int
    oldest_waiting_seconds: float | None
    throughput_last_minute: int
    paused: bool


def queue_rows(crisper: Crisper) -> list[QueueRow]:
    """Queue figures (depth, pace) joined with their durable pause state."""
    paused = {q.name: q for q in crisper.queues.list_queues()}
    figures = {q.name: q for q in monitor.queues(crisper.store, crisper.registry)}
    rows = []
    for name in sorted(set(paused) | set(figures)):
        f, p = figures.get(name), paused.get(name)
        rows.append(QueueRow(name, f.depth if f else 0, f.running if f else 0,
                             p.waiting if p else 0, f.oldest_waiting_seconds if f else None,
                             f.throughput_last_minute if f else 0, bool(p and p.paused)))
    return rows


@router.get("/")
def overview(request: Request, who: Reader) -> Response:
    crisper = crisper_of(request)
    minutes = insights.activity(crisper.store, who.tenant)
    outcomes = [o for o in insights.outcomes(crisper.store, who.tenant) if o.succeeded + o.failed]
    queues = queue_rows(crisper) if who.can_admin else None
    workers = monitor.workers(crisper.store, crisper.settings) if who.can_admin else None
    online = [w for w in workers or [] if w.status == "alive"]
    return render(request, "overview.html", who, page="overview",
                  chart=activity_chart(minutes), outcomes=outcomes, queues=queues,
                  workers=workers, online=online)


@router.get("/queues")
def queues_page(request: Request, who: Reader, done: str | None = None) -> Response:
    crisper = crisper_of(request)
    if not who.can_admin:
        return render(request, "queues.html", who, page="queues", queues=None, workers=None,
                      limits=None, done=None)
    return render(request, "queues.html", who, page="queues", queues=queue_rows(crisper),
                  workers=monitor.workers(crisper.store, crisper.settings),
                  limits=crisper.limit_view.states(),
                  lost_after=crisper.settings.worker_lost_after_seconds,
                  done=done if done in ("pause", "resume") else None)


@router.post("/queues/{name}/{action}")
async def queue_action(request: Request, name: str, action: str) -> Response:
    who = await acting(request, "admin")
    del who
    queues = crisper_of(request).queues
    change = {"pause": queues.pause, "resume": queues.resume}.get(action)
    if change is None:
        return Response("unknown action", status_code=404, media_type="text/plain")
    await run_in_threadpool(change, name)
    return RedirectResponse(f"{base_of(request)}/queues?done={action}", status_code=303)


@router.get("/failed")
def failed_page(request: Request, who: Reader, retried: int | None = None,
                skipped: int | None = None) -> Response:
    groups = insights.failed_groups(crisper_of(request).store, who.tenant)
    return render(request, "failed.html", who, page="failed", groups=groups,
                  window=insights.FAILED_WINDOW, retried=retried, skipped=skipped)


@router.post("/failed/retry")
async def failed_retry(request: Request, type: Annotated[str, Form()],
                       error_type: Annotated[str, Form()] = "",
                       message: Annotated[str, Form()] = "") -> Response:
    who = await acting(request, "write")
    crisper = crisper_of(request)
    result = await run_in_threadpool(insights.retry_failed_group, crisper.store, crisper.jobs,
                                     who.tenant, type, error_type, message)
    return RedirectResponse(
        f"{base_of(request)}/failed?retried={result.changed}&skipped={result.skipped}",
        status_code=303)
