"""Batch pages (list, detail with live counters, cancel and retry) and webhook redelivery."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from crisper.dashboard.render import base_of, render
from crisper.dashboard.routes_pages import Reader, acting, crisper_of
from crisper.store import utcnow
from crisper.watch import watch_batch

router = APIRouter()
JOBS_SHOWN = 100


@router.get("/batches")
def batches_page(request: Request, who: Reader) -> Response:
    found = crisper_of(request).batches.list_batches(who.tenant, 100)
    return render(request, "batches.html", who, page="batches", batches=found, now=utcnow())


@router.get("/batches/{batch_id}")
def batch_page(request: Request, batch_id: str, who: Reader, done: str | None = None
               ) -> Response:
    crisper = crisper_of(request)
    batch = crisper.batches.get(batch_id, who.tenant)
    jobs = crisper.batches.jobs(batch.id, who.tenant, JOBS_SHOWN)
    deliveries = crisper.webhooks.deliveries(who.tenant, batch_id=batch.id, limit=50)
    return render(request, "batch.html", who, page="batches", batch=batch, jobs=jobs,
                  deliveries=[d for d in deliveries if d.job_id is None], now=utcnow(),
                  done=done if done in ("cancel", "retry", "redeliver") else None)


@router.get("/batches/{batch_id}/stream")
def batch_stream(request: Request, batch_id: str, who: Reader) -> StreamingResponse:
    """The batch's counters, live (the same stream as /v1/batches/{id}/stream)."""
    crisper = crisper_of(request)
    first = crisper.batches.get(batch_id, who.tenant)
    return StreamingResponse(watch_batch(crisper.batches, first, who.tenant),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/batches/{batch_id}/{action}")
async def batch_action(request: Request, batch_id: str, action: str) -> Response:
    who = await acting(request, "write")
    service = crisper_of(request).batches
    method = {"cancel": service.cancel, "retry": service.retry}.get(action)
    if method is None:
        return Response("unknown action", status_code=404, media_type="text/plain")
    await run_in_threadpool(method, batch_id, who.tenant)
    return RedirectResponse(f"{base_of(request)}/batches/{batch_id}?done={action}",
                            status_code=303)


@router.post("/deliveries/{delivery_id}/redeliver")
async def redeliver(request: Request, delivery_id: str) -> Response:
    """Send a delivery again, then go back to the job (or batch) it belongs to."""
    who = await acting(request, "write")
    d = await run_in_threadpool(crisper_of(request).webhooks.redeliver, delivery_id,
                                who.tenant)
    where = f"jobs/{d.job_id}" if d.job_id else f"batches/{d.batch_id}"
    return RedirectResponse(f"{base_of(request)}/{where}?done=redeliver", status_code=303)
