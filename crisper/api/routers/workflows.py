"""/v1/workflows: create a graph of jobs, read every node's state, cancel, retry (resume)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from crisper.api.auth import AppDep, Reader, Writer
from crisper.api.problems import responses
from crisper.priorities import PRIORITY_MAX
from crisper.workflow_service import WorkflowView
from crisper.workflows import Workflow

router = APIRouter(prefix="/v1", tags=["workflows"], responses=responses(401, 403, 500, 503))
PolicyName = Literal["fail", "run", "skip"]


class AfterIn(BaseModel):
    node: str
    on_failure: PolicyName | None = Field(None, description="this edge's policy (default: the "
                                                            "workflow's)")
    receive: bool | None = Field(None, description="give the child this parent's result")


class NodeIn(BaseModel):
    name: str | None = Field(None, max_length=200, description="unique in the workflow "
                                                               "(default: the type)")
    type: str
    params: dict[str, Any] = Field(default_factory=dict)
    queue: str | None = None
    priority: int | None = Field(None, ge=0, le=PRIORITY_MAX)
    after: list[str | AfterIn] = Field(default_factory=list, description="parent node names")
    receive: bool | list[str] = Field(False, description="true: every parent's result; or the "
                                                         "parents to receive, by name")
    deliver: Literal["result", "list"] | None = Field(
        None, description="Celery's way: the received result (\"result\", exactly one) or the "
                          "list of received results in `after` order (\"list\") is passed as "
                          "the first parameter, left out of `params`")


class WorkflowIn(BaseModel):
    name: str = Field(max_length=200)
    on_failure: PolicyName = "fail"
    nodes: list[NodeIn] = Field(min_length=1)


class NodeOut(BaseModel):
    id: str
    node: str
    type: str
    state: str
    attempt: int
    waiting_for: int | None = Field(description="parents not finished yet (waiting nodes)")
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    link: str


class EdgeOut(BaseModel):
    parent: str
    child: str
    on_failure: str
    receive: bool


class WorkflowOut(BaseModel):
    id: str
    name: str
    status: str = Field(description="running, cancelling, succeeded, failed or cancelled: "
                                    "summarised from the nodes' states")
    created_at: datetime
    cancelled_at: datetime | None
    retried_at: datetime | None
    size: int
    counts: dict[str, int]
    nodes: list[NodeOut] = Field(default_factory=list)
    edges: list[EdgeOut] = Field(default_factory=list)


class RetryIn(BaseModel):
    node: str | None = Field(None, description="rerun this node and its downstream only")
    params: dict[str, Any] | None = Field(None, description="the node's edited params (a "
                                                            "replay with edit)")


def out(view: WorkflowView) -> WorkflowOut:
    return WorkflowOut(
        id=str(view.id), name=view.name, status=view.status, created_at=view.created_at,
        cancelled_at=view.cancelled_at, retried_at=view.retried_at, size=view.size,
        counts=view.counts,
        nodes=[NodeOut(id=str(n.id), node=n.node, type=n.type, state=n.state.value,
                       attempt=n.attempt, waiting_for=n.pending_parents if n.state.value ==
                       "waiting" else None, error=(n.error or {}).get("message"),
                       started_at=n.started_at, finished_at=n.finished_at,
                       link=f"/v1/jobs/{n.id}") for n in view.nodes],
        edges=[EdgeOut(parent=e.parent, child=e.child, on_failure=e.policy, receive=e.receives)
               for e in view.edges],
    )


@router.post("/workflows", response_model=WorkflowOut, status_code=202,
             responses=responses(400, 413, 422))
def create_workflow(body: WorkflowIn, crisper: AppDep, who: Writer) -> WorkflowOut:
    """Store the whole graph in one transaction; nodes with parents wait for them."""
    spec = body.model_dump()
    wf = Workflow.from_spec(spec, crisper.workflows)
    view = crisper.workflows.submit(wf, tenant=who.tenant)
    return out(view)


@router.get("/workflows", response_model=list[WorkflowOut], responses=responses(422))
def list_workflows(crisper: AppDep, who: Reader, before: str | None = None,
                   limit: int = 50) -> list[WorkflowOut]:
    """Newest first, with nodes counted per state; `before` (a workflow id) pages back."""
    return [out(v) for v in crisper.workflows.list_workflows(who.tenant, before,
                                                             max(1, min(limit, 200)))]


@router.get("/workflows/{workflow_id}", response_model=WorkflowOut, responses=responses(404))
def get_workflow(workflow_id: str, crisper: AppDep, who: Reader) -> WorkflowOut:
    """The workflow with every node's state and the edges between them."""
    return out(crisper.workflows.get(workflow_id, who.tenant))


@router.post("/workflows/{workflow_id}/cancel", response_model=WorkflowOut, status_code=202,
             responses=responses(404))
def cancel_workflow(workflow_id: str, crisper: AppDep, who: Writer) -> WorkflowOut:
    """Cancel every unfinished node; running ones stop under the cancel rules."""
    return out(crisper.workflows.cancel(workflow_id, who.tenant))


@router.post("/workflows/{workflow_id}/retry", response_model=WorkflowOut,
             responses=responses(400, 404, 409, 413, 422))
def retry_workflow(workflow_id: str, crisper: AppDep, who: Writer,
                   body: RetryIn | None = None) -> WorkflowOut:
    """Resume: rerun failed, cancelled and skipped nodes and what follows them; or one node
    (with edited params) and its downstream."""
    if body is not None and body.node is not None:
        return out(crisper.workflows.retry_node(workflow_id, body.node, body.params,
                                                who.tenant))
    return out(crisper.workflows.retry(workflow_id, who.tenant))
