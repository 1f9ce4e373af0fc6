"""Workflows as data: a builder for chains, fan-out, fan-in and any DAG of jobs (pure).

    wf = crisper.workflow("scrape")
    index = wf.add("fetch_index", {"site": "a"})
    pages = wf.map("fetch_page", [{"n": i} for i in range(100)], after=index)  # fan-out
    report = wf.add("merge", after=pages, receive=True)                          # fan-in
    handle = wf.submit()            # or wf.submit(session=s): inside the caller's transaction

Every node is a durable job. A node with parents waits (state `waiting`) until each of them
has ended; `receive` names the parents whose results it gets, by parent node name, in
`ctx.parents`. A parent's failure acts on its children by the edge's policy: "fail" (the
default: the child fails, its error naming the parent), "run" (the child runs anyway) or
"skip" (the child ends `skipped`).

`deliver` is Celery's way of receiving (crisper/canvas.py maps chain, group and chord onto
it): "result" passes the one received parent's result as the node's first parameter, "list"
passes the received parents' results, in the order the parents were given, as a list.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from crisper.errors import InvalidRequest
from crisper.names import text_problem
from crisper.states import ACTIVE, JobState

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from crisper.store.workflows import NodeRow


class Submits(Protocol):
    """What a workflow needs to be stored: the workflow service's submit."""

    def submit(self, wf: Workflow, session: Session | None = None, tenant: str = "default"
               ) -> WorkflowView: ...

Policy = Literal["fail", "run", "skip"]
POLICIES: tuple[str, ...] = ("fail", "run", "skip")
Deliver = Literal["result", "list"]
DELIVERIES: tuple[str, ...] = ("result", "list")
MAX_NODES = 100_000
MAX_NAME = 200


@dataclass(frozen=True)
class Edge:
    """The child waits for the parent; `policy` says what the parent's failure does to it."""

    parent: str
    child: str
    policy: Policy = "fail"
    receives: bool = False


@dataclass
class Node:
    """One job of a workflow, named uniquely within it."""

    name: str
    type: str
    params: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    tags: Sequence[str] = ()
    # Received results go into the first parameter ("result": the one; "list": all, in order).
    deliver: Deliver | None = None


Parents = Node | str | Iterable[Node | str] | None


class Workflow:
    """A graph of jobs built in memory and stored in one transaction by `submit`."""

    def __init__(self, name: str, *, on_failure: Policy = "fail",
                 service: Submits | None = None) -> None:
        _check_policy(on_failure)
        problem = text_problem(name, MAX_NAME)
        if problem is not None:
            raise InvalidRequest("name", problem)
        self.name = name
        self.on_failure: Policy = on_failure
        self.nodes: dict[str, Node] = {}
        self.edges: dict[tuple[str, str], Edge] = {}
        self._service = service

    def add(self, type: str, params: Mapping[str, Any] | None = None, *, name: str | None = None,
            after: Parents = None, receive: bool | Parents = False,
            on_failure: Policy | None = None, queue: str | None = None,
            priority: int | None = None, tags: Sequence[str] = (),
            deliver: Deliver | None = None) -> Node:
        """One node; `after` its parents; `receive` True (all parents) or the ones to receive;
        `deliver` puts the received results into the first parameter (Celery's rule)."""
        if deliver is not None and deliver not in DELIVERIES:
            raise InvalidRequest("deliver", f"must be one of {', '.join(DELIVERIES)}, "
                                 f"not {deliver!r}")
        node = Node(self._fresh_name(name or type), type, dict(params or {}), queue, priority,
                    tags, deliver)
        self.nodes[node.name] = node
        parents = _names(after)
        received = set(parents) if receive is True else set(_names(receive or None))
        for parent in parents:
            self.depend(node, parent, on_failure=on_failure, receive=parent in received)
        missing = received - set(parents)
        if missing:
            raise InvalidRequest("receive", f"{sorted(missing)} are not parents of {node.name!r}")
        return node

    def map(self, type: str, items: Iterable[Mapping[str, Any]], *, name: str | None = None,
            after: Parents = None, receive: bool | Parents = False,
            on_failure: Policy | None = None, queue: str | None = None) -> list[Node]:
        """Fan-out: one node per params item, named `name[i]`, each after the same parents."""
        base = name or type
        return [self.add(type, params, name=f"{base}[{i}]", after=after, receive=receive,
                         on_failure=on_failure, queue=queue) for i, params in enumerate(items)]

    def depend(self, child: Node | str, parent: Node | str, *, on_failure: Policy | None = None,
               receive: bool = False) -> Edge:
        """An edge of its own policy: `child` waits for `parent`."""
        policy = on_failure or self.on_failure
        _check_policy(policy)
        c, p = _name(child), _name(parent)
        for known in (c, p):
            if known not in self.nodes:
                raise InvalidRequest("after", f"no node named {known!r} in workflow {self.name!r}")
        if c == p:
            raise InvalidRequest("after", f"node {c!r} cannot wait for itself")
        edge = self.edges[(p, c)] = Edge(p, c, policy, receive)
        return edge

    def submit(self, session: Session | None = None, tenant: str = "default") -> WorkflowView:
        """Store the whole graph in one transaction (the caller's, with `session`)."""
        if self._service is None:
            raise InvalidRequest("workflow", "built without an app; use crisper.workflow(...)")
        return self._service.submit(self, session=session, tenant=tenant)

    def check_deliveries(self) -> None:
        """A node delivering "result" must receive exactly one parent's result."""
        received: dict[str, int] = {}
        for e in self.edges.values():
            received[e.child] = received.get(e.child, 0) + e.receives
        for node in self.nodes.values():
            if node.deliver == "result" and received.get(node.name, 0) != 1:
                raise InvalidRequest("deliver", f"node {node.name!r}: \"result\" passes one "
                                     f"parent's result, it receives {received.get(node.name, 0)}"
                                     "; use \"list\"")

    def order(self) -> list[str]:
        """Node names, parents before children; InvalidRequest names a cycle's nodes."""
        return topological(list(self.nodes), list(self.edges.values()))

    def _fresh_name(self, name: str) -> str:
        problem = text_problem(name, MAX_NAME)
        if problem is not None:
            raise InvalidRequest("name", problem)
        if name not in self.nodes:
            return name
        n = 2
        while f"{name}#{n}" in self.nodes:
            n += 1
        return f"{name}#{n}"

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], service: Submits | None = None
                  ) -> Workflow:
        """The JSON form (the HTTP API's): {name, on_failure?, nodes: [{name, type, params?,
        queue?, priority?, after?: [name | {node, on_failure?, receive?}], receive?}]}."""
        wf = cls(str(spec.get("name") or "workflow"), on_failure=spec.get("on_failure", "fail"),
                 service=service)
        specs = list(spec.get("nodes") or [])
        for i, n in enumerate(specs):
            if not isinstance(n, Mapping) or not n.get("type"):
                raise InvalidRequest(f"nodes.{i}", "each node needs a type")
            name = str(n.get("name") or n["type"])
            if name in wf.nodes:
                raise InvalidRequest(f"nodes.{i}.name", f"node name {name!r} is used twice")
            wf.add(n["type"], n.get("params") or {}, name=name, queue=n.get("queue"),
                   priority=n.get("priority"), tags=n.get("tags") or (),
                   deliver=n.get("deliver"))
        for n in specs:
            receive = n.get("receive", False)
            for parent in n.get("after") or []:
                edge = parent if isinstance(parent, Mapping) else {"node": parent}
                pname = str(edge.get("node"))
                gets = edge.get("receive")
                if gets is None:
                    gets = receive is True or (isinstance(receive, list) and pname in receive)
                wf.depend(str(n.get("name") or n["type"]), pname,
                          on_failure=edge.get("on_failure"), receive=bool(gets))
        return wf


def topological(names: Sequence[str], edges: Sequence[Edge]) -> list[str]:
    """Kahn's order over the edges; a cycle is refused, naming the nodes in it."""
    pending = {n: 0 for n in names}
    children: dict[str, list[str]] = {n: [] for n in names}
    for e in edges:
        pending[e.child] += 1
        children[e.parent].append(e.child)
    ready = [n for n in names if pending[n] == 0]
    order: list[str] = []
    while ready:
        n = ready.pop()
        order.append(n)
        for c in children[n]:
            pending[c] -= 1
            if pending[c] == 0:
                ready.append(c)
    if len(order) != len(names):
        stuck = sorted(n for n in names if pending[n] > 0)[:10]
        raise InvalidRequest("after", f"the workflow has a cycle through {stuck}")
    return order


def downstream(roots: Iterable[str], children: Mapping[str, Sequence[str]]) -> set[str]:
    """The roots and every node reachable from them."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(children.get(n, ()))
    return seen


WorkflowStatus = Literal["running", "cancelling", "succeeded", "failed", "cancelled"]


def status(counts: Mapping[str, int], cancel_asked: bool) -> WorkflowStatus:
    """A workflow's status, summarised from its nodes' stored states (not stored itself: no
    one row that every node's end must update)."""
    active = sum(counts.get(s.value, 0) for s in ACTIVE)
    if active:
        return "cancelling" if cancel_asked else "running"
    if counts.get(JobState.FAILED.value):
        return "failed"
    if counts.get(JobState.CANCELLED.value):
        return "cancelled"
    return "succeeded"


def _check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise InvalidRequest("on_failure", f"must be one of {', '.join(POLICIES)}, "
                             f"not {policy!r}")


def _name(node: Node | str) -> str:
    return node.name if isinstance(node, Node) else str(node)


def _names(nodes: Parents | bool) -> list[str]:
    if nodes is None or nodes is False:
        return []
    if isinstance(nodes, (Node, str)):
        return [_name(nodes)]
    if nodes is True:
        return []
    return list(dict.fromkeys(_name(n) for n in nodes))  # type: ignore[union-attr]


@dataclass(frozen=True)
class EdgeView:
    parent: str
    child: str
    policy: str
    receives: bool


@dataclass(frozen=True)
class WorkflowView:
    """A workflow as stored: its nodes' states (and, when read whole, its graph)."""

    id: uuid.UUID
    name: str
    tenant: str
    created_at: datetime
    cancelled_at: datetime | None
    retried_at: datetime | None
    size: int
    counts: dict[str, int]
    nodes: list[NodeRow]
    edges: list[EdgeView]
    node_ids: dict[str, uuid.UUID] = field(default_factory=dict)  # as submitted: name -> job

    @property
    def status(self) -> str:
        return status(self.counts, self.cancelled_at is not None)

    def node(self, name: str) -> NodeRow:
        for n in self.nodes:
            if n.node == name:
                return n
        raise KeyError(name)
