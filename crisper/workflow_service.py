"""The workflow service: submit, read, cancel and resume workflows. (A node's run as the worker
sees it is crisper/engine/nodes.py.)"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from crisper.engine.nodes import DELIVER_KEY, send_released
from crisper.errors import InvalidRequest, WorkflowBusy, WorkflowNotFound
from crisper.flow import limits
from crisper.ids import new_id, parse_id
from crisper.records import JobRecord
from crisper.service import JobService, SubmitRequest
from crisper.states import ACTIVE, TERMINAL, JobState
from crisper.store import utcnow
from crisper.store import workflows as workflow_sql
from crisper.workflows import (  # noqa: F401 - the views are this service's answers
    MAX_NODES,
    EdgeView,
    Workflow,
    WorkflowView,
    downstream,
    status,
)

if TYPE_CHECKING:
    from crisper.engine.dispatcher import Dispatcher
    from crisper.registry import Registry
    from crisper.store import Store

log = logging.getLogger(__name__)
S = JobState


class WorkflowService:
    """Adapters (CLI, HTTP, dashboard) and `Workflow.submit` call only this."""

    def __init__(self, store: Store, registry: Registry, jobs: JobService,
                 dispatcher: Dispatcher) -> None:
        self.store = store
        self.registry = registry
        self.jobs = jobs
        self.dispatcher = dispatcher

    def workflow(self, name: str, on_failure: Any = "fail") -> Workflow:
        return Workflow(name, on_failure=on_failure, service=self)

    # -- submit -----------------------------------------------------------------------------

    def submit(self, wf: Workflow, session: Session | None = None, tenant: str = "default"
               ) -> WorkflowView:
        """Store the workflow, its nodes and edges in one transaction; then wake the roots."""
        if not wf.nodes:
            raise InvalidRequest("nodes", "a workflow needs at least one node")
        if len(wf.nodes) > MAX_NODES:
            raise InvalidRequest("nodes", f"at most {MAX_NODES} nodes per workflow")
        order = wf.order()
        wf.check_deliveries()
        at, workflow_id = utcnow(), new_id()
        send = session is None and self.jobs.breaker.allows()
        rows = self._rows(wf, order, workflow_id, tenant, at, send)
        ids = {r["workflow_node"]: r["id"] for r in rows}
        positions: dict[str, int] = {}
        edges = []
        for e in wf.edges.values():
            positions[e.child] = positions.get(e.child, -1) + 1
            edges.append({"parent_id": ids[e.parent], "child_id": ids[e.child],
                          "workflow_id": workflow_id, "policy": e.policy,
                          "receives": e.receives, "position": positions[e.child]})
        head = {"id": workflow_id, "tenant": tenant, "name": wf.name, "nodes": len(rows),
                "created_at": at}
        roots = [JobRecord.from_new_row(r) for r in rows if r["state"] == S.QUEUED.value]
        if session is not None:
            workflow_sql.create(session, head, rows, edges, at)
            self.jobs._dispatch_after_commit(session, roots)
        else:
            with self.store.transaction() as own:
                workflow_sql.create(own, head, rows, edges, at)
            if send:
                self.jobs._dispatch_now(roots, allowed=True)
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["state"]] = counts.get(r["state"], 0) + 1
        return WorkflowView(workflow_id, wf.name, tenant, at, None, None, len(rows), counts, [],
                            [], ids)

    def _rows(self, wf: Workflow, order: list[str], workflow_id: uuid.UUID, tenant: str,
              at: datetime, send: bool) -> list[dict[str, Any]]:
        """One job row per node, validated as any submit is; nodes with parents wait.

        The first node of each kind (type, queue, priority, tags) goes through every submit
        check; the others of that kind only need their params validated.
        """
        pending = {name: 0 for name in order}
        for e in wf.edges.values():
            pending[e.child] += 1
        templates: dict[tuple[Any, ...], dict[str, Any]] = {}
        rows = []
        for name in order:
            node = wf.nodes[name]
            kind = (node.type, node.queue, node.priority, tuple(node.tags), node.deliver)
            template = templates.get(kind)
            later = node.deliver is not None
            if template is None:
                meta = {DELIVER_KEY: str(node.deliver)} if later else None
                request = SubmitRequest(type=node.type, params=node.params, queue=node.queue,
                                        priority=node.priority, tags=node.tags, tenant=tenant,
                                        metadata=meta)
                row = templates[kind] = self.jobs._row(request, at, given_later=later)
            else:
                job_type = self.registry.get(node.type)
                params = job_type.validate(node.params, given_later=later)
                row = {**template, "id": new_id(), "params": params, "concurrency_key":
                       limits.concurrency_key(job_type.options.flow, job_type.name, params)}
            waits = pending[name] > 0
            row.update(
                workflow_id=workflow_id, workflow_node=name, pending_parents=pending[name],
                unique_key=None,  # a node's identity is its place in the graph
                state=S.WAITING.value if waits else S.QUEUED.value,
                queued_at=None if waits else at,
                dispatched_at=at if send and not waits else None,
            )
            rows.append(row)
        return rows

    # -- read -------------------------------------------------------------------------------

    def get(self, workflow_id: object, tenant: str | None = None) -> WorkflowView:
        parsed = parse_id(workflow_id)
        if parsed is None:
            raise WorkflowNotFound(workflow_id)
        with self.store.read() as session:
            head = workflow_sql.get(session, parsed, tenant)
            if head is None:
                raise WorkflowNotFound(workflow_id)
            nodes = workflow_sql.nodes(session, parsed)
            edges = workflow_sql.edges(session, parsed)
        names = {n.id: n.node for n in nodes}
        counts: dict[str, int] = {}
        for n in nodes:
            counts[n.state.value] = counts.get(n.state.value, 0) + 1
        return _view(head, counts, nodes, [EdgeView(names[e.parent_id], names[e.child_id],
                                                   e.policy, e.receives) for e in edges])

    def list_workflows(self, tenant: str | None = None, before: object = None, limit: int = 50
             ) -> list[WorkflowView]:
        """Newest first, with each workflow's nodes counted per state."""
        older = parse_id(before) if before is not None else None
        with self.store.read() as session:
            heads = workflow_sql.list_workflows(session, tenant, older, limit)
            counts = workflow_sql.state_counts(session, [h.id for h in heads])
        return [_view(h, counts[h.id], [], []) for h in heads]

    def wait(self, workflow_id: object, timeout: float = 60, every: float = 0.2
             ) -> WorkflowView:
        """Poll until no node is active (tests and scripts; the dashboard streams instead)."""
        deadline = time.monotonic() + timeout
        while True:
            view = self.get(workflow_id)
            if view.status not in ("running", "cancelling"):
                return view
            if time.monotonic() > deadline:
                raise TimeoutError(f"workflow {workflow_id} still {view.status} after "
                                   f"{timeout}s: {view.counts}")
            time.sleep(every)

    # -- steer ------------------------------------------------------------------------------

    def cancel(self, workflow_id: object, tenant: str | None = None) -> WorkflowView:
        """Cancel every unfinished node now; running ones are asked to stop (cancel rules)."""
        view = self.get(workflow_id, tenant)
        with self.store.transaction() as session:
            workflow_sql.cancel(session, view.id, utcnow())
        return self.get(view.id)

    def retry(self, workflow_id: object, tenant: str | None = None) -> WorkflowView:
        """Rerun the failed, cancelled and skipped nodes and all downstream of them; the
        results of nodes that succeeded (and are not downstream of a failure) are kept."""
        view = self.get(workflow_id, tenant)
        bad = [n.node for n in view.nodes if n.state in TERMINAL and n.state is not S.SUCCEEDED]
        if not bad:
            raise WorkflowBusy(view.id, "nothing to retry: no node failed, was cancelled or "
                                        "skipped")
        return self._rerun(view, bad, {})

    def retry_node(self, workflow_id: object, node: str, params: dict[str, Any] | None = None,
                   tenant: str | None = None) -> WorkflowView:
        """Rerun one node (with edited params: a replay with edit) and all downstream of it."""
        view = self.get(workflow_id, tenant)
        try:
            target = view.node(node)
        except KeyError:
            raise InvalidRequest("node", f"no node named {node!r} in workflow {view.id}; "
                                 f"known: {', '.join(sorted(n.node for n in view.nodes)[:20])}"
                                 ) from None
        edits = {}
        if params is not None:  # a delivering node's first parameter still comes from parents
            later = DELIVER_KEY in (self.jobs.get(target.id).metadata or {})
            edits[node] = self.registry.get(target.type).validate(params,
                                                                          given_later=later)
        return self._rerun(view, [node], edits)

    def _rerun(self, view: WorkflowView, roots: list[str], edits: dict[str, dict[str, Any]]
               ) -> WorkflowView:
        children: dict[str, list[str]] = {}
        parents: dict[str, list[str]] = {}
        for e in view.edges:
            children.setdefault(e.parent, []).append(e.child)
            parents.setdefault(e.child, []).append(e.parent)
        again = downstream(roots, children)
        busy = sorted(n.node for n in view.nodes if n.node in again and n.state in ACTIVE)
        if busy:
            raise WorkflowBusy(view.id, f"nodes {busy[:10]} have not finished; cancel the "
                                        "workflow or wait for them")
        reruns = [
            workflow_sql.Rerun(n.id, n.state, n.attempt,
                               sum(1 for p in parents.get(n.node, ()) if p in again),
                               edits.get(n.node), n.params if n.node in edits else None)
            for n in view.nodes if n.node in again
        ]
        with self.store.transaction() as session:
            dispatches = workflow_sql.rerun(session, view.id, reruns, utcnow())
        send_released(self.store, self.dispatcher, dispatches)
        return self.get(view.id)


def _view(head: Any, counts: dict[str, int], nodes: list[workflow_sql.NodeRow],
          edges: list[EdgeView]) -> WorkflowView:
    return WorkflowView(head.id, head.name, head.tenant, head.created_at, head.cancelled_at,
                        head.retried_at, head.nodes, counts, nodes, edges)
