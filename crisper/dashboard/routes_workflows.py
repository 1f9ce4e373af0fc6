"""Workflow pages: the list, and one workflow drawn as a graph whose nodes follow live."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from crisper.dashboard.graph import BOX_H, BOX_W, layout
from crisper.dashboard.render import base_of, render
from crisper.dashboard.routes_pages import Reader, acting, crisper_of
from crisper.errors import InvalidRequest, WorkflowBusy

router = APIRouter()
DRAWN = 600  # nodes beyond this are listed, not drawn


@router.get("/workflows")
def workflows_page(request: Request, who: Reader, before: str | None = None) -> Response:
    found = crisper_of(request).workflows.list_workflows(who.tenant, before, 50)
    return render(request, "workflows.html", who, page="workflows", workflows=found)


def _workflow_page(request: Request, who: Reader, workflow_id: str, status: int = 200,
                   error: str | None = None, done: str | None = None) -> Response:
    view = crisper_of(request).workflows.get(workflow_id, who.tenant)
    pairs = [(e.parent, e.child) for e in view.edges]
    drawn = len(view.nodes) <= DRAWN
    graph = layout([n.node for n in view.nodes], pairs) if drawn else None
    return render(request, "workflow.html", who, status=status, page="workflows", wf=view,
                  graph=graph, box_w=BOX_W, box_h=BOX_H, pairs=pairs if drawn else [],
                  error=error, done=done if done in ("cancel", "retry") else None)


@router.get("/workflows/{workflow_id}")
def workflow_page(request: Request, workflow_id: str, who: Reader, done: str | None = None
                  ) -> Response:
    return _workflow_page(request, who, workflow_id, done=done)


@router.get("/live/workflows/{workflow_id}")
def live_workflow(request: Request, workflow_id: str, who: Reader) -> JSONResponse:
    """Every node's state, for the page's poll (one indexed read of the workflow's nodes)."""
    view = crisper_of(request).workflows.get(workflow_id, who.tenant)
    return JSONResponse({"status": view.status, "counts": view.counts,
                         "nodes": [{"id": str(n.id), "state": n.state.value}
                                   for n in view.nodes]})


@router.post("/workflows/{workflow_id}/{action}")
async def workflow_action(request: Request, workflow_id: str, action: str) -> Response:
    who = await acting(request, "write")
    service = crisper_of(request).workflows
    method = {"cancel": service.cancel, "retry": service.retry}.get(action)
    if method is None:
        return Response("unknown action", status_code=404, media_type="text/plain")
    try:
        view = await run_in_threadpool(method, workflow_id, who.tenant)
    except (WorkflowBusy, InvalidRequest) as exc:
        return await run_in_threadpool(_workflow_page, request, who, workflow_id, 409, str(exc))
    return RedirectResponse(f"{base_of(request)}/workflows/{view.id}?done={action}",
                            status_code=303)
