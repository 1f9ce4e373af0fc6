"""The tenant's webhook subscriptions (list, add, remove) and its recent deliveries."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from crisper.dashboard.render import base_of, render
from crisper.dashboard.routes_pages import Reader, acting, crisper_of
from crisper.store import utcnow
from crisper.webhook_events import SUBSCRIBABLE

router = APIRouter()
DELIVERIES_SHOWN = 50


@router.get("/webhooks")
def webhooks_page(request: Request, who: Reader, done: str | None = None) -> Response:
    service = crisper_of(request).webhooks
    return render(request, "webhooks.html", who, page="webhooks",
                  subscriptions=service.subscriptions(who.tenant), events=SUBSCRIBABLE,
                  deliveries=service.deliveries(who.tenant, limit=DELIVERIES_SHOWN),
                  done=done if done in ("added", "removed") else None, now=utcnow())


@router.post("/webhooks/subscriptions")
async def add_subscription(request: Request) -> Response:
    """The same checks as POST /v1/webhooks/subscriptions (the service's): URL, events, names."""
    who = await acting(request, "write")
    form = await request.form()
    events = [str(e) for e in form.getlist("events")]
    type_, queue = (str(form.get(k) or "").strip() or None for k in ("type", "queue"))
    await run_in_threadpool(crisper_of(request).webhooks.subscribe, str(form.get("url") or ""),
                            events, who.tenant, type=type_, queue=queue)
    return RedirectResponse(f"{base_of(request)}/webhooks?done=added", status_code=303)


@router.post("/webhooks/subscriptions/{sub_id}/delete")
async def remove_subscription(request: Request, sub_id: str) -> Response:
    who = await acting(request, "write")
    await run_in_threadpool(crisper_of(request).webhooks.unsubscribe, sub_id, who.tenant)
    return RedirectResponse(f"{base_of(request)}/webhooks?done=removed", status_code=303)
