"""Celery's canvas as one Crisper workflow: walk chain, group and chord into a graph (pure).

Celery runs a canvas by passing callbacks along with each message, and a chord by polling
its header's results (chord_unlock) in the result backend. Here the whole canvas becomes one
workflow, stored before anything runs; Celery's rules for results become deliveries:

- a node after one node gets that node's result as its first positional argument
  (`deliver="result"`);
- a node after a group (a chord's callback) gets the list of the group's results, in the
  header's order (`deliver="list"`, the edges' positions keeping that order);
- an immutable signature (`.si()`) waits for its parents and gets nothing.

`translate()` builds the `Workflow` and the shape of Celery's answer (`One`: an
AsyncResult, `Many`: a GroupResult) without I/O; crisper/adoption/canvas.py submits it and
builds the results. Whatever else canvas offers is refused with a message naming what to use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from celery import canvas as celery_canvas
from celery.canvas import Signature, _chain, _chord, chunks, group, xmap, xstarmap

from crisper.errors import InvalidRequest
from crisper.workflows import Deliver, Workflow

FIELD = "canvas"
# Options Celery itself may leave on a signature, with no meaning for a stored node.
INERT = frozenset({"reply_to", "group_id", "group_index", "root_id", "parent_id",
                   "stamped_headers", "stamps", "subtask_type", "chord_size"})
REFUSED_OPTIONS = {
    "link": "callbacks are not run: chain the next step instead (a | b, or chain(a, b))",
    "link_error": "error callbacks are not run: a failed node fails the nodes after it "
                  "(the workflow's on_failure policy); read the failure from the result",
    "countdown": "a node starts when its parents are done; delay the step itself inside "
                 "its body, or submit the canvas later from a scheduled job",
    "eta": "a node starts when its parents are done; submit the canvas later from a "
           "scheduled job",
    "expires": "a node of a workflow does not expire; cancel the workflow instead",
    "task_id": "ids are given when the workflow is stored: read them from the result "
               "(.id, .parent, .results), not from freeze()",
    "chord": "chords are built with chord(header, body) or group | task",
    "chain": "chains are built with chain(...) or |",
}
TYPES = {
    chunks: "chunks is refused: use group(task.s(*args) for args in items) (or a workflow's "
            ".map() for a fan-out)",
    xmap: "map is refused: use group(task.s(item) for item in items)",
    xstarmap: "starmap is refused: use group(task.s(*args) for args in items)",
}


@dataclass(frozen=True)
class Leaf:
    """What the walk needs of a signature's job type: its name, its parameters in order, and
    how a Celery priority becomes Crisper's (moved tasks keep the broker's meaning)."""

    name: str
    parameters: tuple[str, ...]
    priority: Callable[[int], int] = int


@dataclass(frozen=True)
class One:
    """One node's result (Celery's AsyncResult); `parent`: the step before it, if any."""

    node: str
    parent: Shape | None = None


@dataclass(frozen=True)
class Many:
    """A group's results in order (Celery's GroupResult)."""

    members: tuple[One, ...]
    parent: Shape | None = None


Shape = One | Many
Resolve = Callable[[Signature], Leaf | None]  # None: not a Crisper job type


@dataclass(frozen=True)
class Feed:
    """What flows into a step: the nodes it waits for, how it receives their results, the
    shape it follows (its result's parent), and the call's partial args (first steps only)."""

    parents: tuple[str, ...] = ()
    deliver: Deliver | None = None
    follows: Shape | None = None
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    workflow: Workflow
    result: Shape


def translate(sig: Signature, resolve: Resolve, args: tuple[Any, ...] = (),
              kwargs: Mapping[str, Any] | None = None, name: str | None = None) -> Plan:
    """The workflow a canvas stands for, and the shape of what calling it returns.

    `args`/`kwargs` are the call's partial arguments (Celery: prepended to the first steps'
    own, unless immutable). InvalidRequest (field "canvas") names what to use instead.
    """
    wf = Workflow(name or _title(sig))
    result = _Walk(wf, resolve).step(sig, Feed(args=tuple(args), kwargs=dict(kwargs or {})))
    return Plan(wf, result)


def leaves(sig: Any) -> Iterator[Signature]:
    """Every task signature in a canvas (inside chunks and maps too), depth first."""
    if isinstance(sig, (_chain, group)):
        for task in sig.tasks:
            yield from leaves(task)
    elif isinstance(sig, _chord):
        yield from leaves(group(sig.tasks))
        if sig.body is not None:
            yield from leaves(sig.body)
    elif isinstance(sig, celery_canvas._basemap | chunks):
        yield from leaves(celery_canvas.maybe_signature(sig.kwargs.get("task")))
    elif isinstance(sig, Signature):
        yield sig


def outputs(shape: Shape) -> tuple[str, ...]:
    """The nodes whose results a shape stands for."""
    return (shape.node,) if isinstance(shape, One) else tuple(m.node for m in shape.members)


class _Walk:
    def __init__(self, wf: Workflow, resolve: Resolve) -> None:
        self.wf = wf
        self.resolve = resolve

    def step(self, sig: Any, feed: Feed) -> Shape:
        for kind, message in TYPES.items():
            if isinstance(sig, kind):
                raise InvalidRequest(FIELD, message)
        if isinstance(sig, _chord):
            return self.chord(sig, feed)
        if isinstance(sig, _chain):
            return self.chain(sig, feed)
        if isinstance(sig, group):
            return self.group(sig, feed)
        if isinstance(sig, Signature):
            return self.leaf(sig, feed)
        raise InvalidRequest(FIELD, f"{sig!r} is not a signature: give task.s(...) or "
                                    "task.si(...)")

    def chain(self, sig: _chain, feed: Feed) -> Shape:
        _no_options(sig, "chain")
        tasks = list(sig.tasks)
        if not tasks:
            raise InvalidRequest(FIELD, "an empty chain: give it at least one signature")
        shape = self.step(tasks[0], feed)
        for task in tasks[1:]:
            shape = self.step(task, _after(shape))
        return shape

    def group(self, sig: group, feed: Feed) -> Many:
        _no_options(sig, "group")
        return self.members(list(sig.tasks), feed)

    def members(self, tasks: list[Any], feed: Feed) -> Many:
        """A group's (or a chord header's) members, each fed alike, each one result."""
        if not tasks:
            raise InvalidRequest(FIELD, "an empty group: give it at least one signature")
        members = []
        for task in tasks:
            shape = self.step(task, feed)
            if not isinstance(shape, One):
                raise InvalidRequest(FIELD, "a group inside a group (or a chain ending in "
                                     "one): put all the signatures into one group")
            members.append(shape)
        return Many(tuple(members), feed.follows)

    def chord(self, sig: _chord, feed: Feed) -> Shape:
        _no_options(sig, "chord")
        if sig.body is None:
            raise InvalidRequest(FIELD, "a chord without a body: chord(header, body)")
        header = self.members(list(sig.tasks), feed)
        return self.step(sig.body, _after(header))

    def leaf(self, sig: Signature, feed: Feed) -> One:
        leaf = self.resolve(sig)
        if leaf is None:
            raise InvalidRequest(FIELD, f"{sig.task!r} is not a Crisper job type: a canvas of "
                                 "Crisper jobs runs as one workflow, so every task in it must "
                                 "be moved (@crisper.job), or called apart")
        options = leaf_options(sig)
        receives = bool(feed.parents) and feed.deliver is not None and not sig.immutable
        args, kwargs = tuple(sig.args), dict(sig.kwargs)
        if not sig.immutable:
            args, kwargs = feed.args + args, {**kwargs, **feed.kwargs}
        params = bind_params(leaf, args, kwargs, skip_first=receives)
        node = self.wf.add(leaf.name, params, after=list(feed.parents), receive=receives,
                           deliver=feed.deliver if receives else None,
                           queue=options.get("queue"),
                           priority=None if options.get("priority") is None
                           else leaf.priority(int(options["priority"])))
        return One(node.name, feed.follows)


def _after(shape: Shape) -> Feed:
    """The feed of the step after `shape`: one result, or a group's list of them."""
    return Feed(outputs(shape), "result" if isinstance(shape, One) else "list", shape)


def bind_params(leaf: Leaf, args: tuple[Any, ...], kwargs: dict[str, Any], skip_first: bool
          ) -> dict[str, Any]:
    """Positional args onto the parameters' names (after the first one when a parent's
    result fills it), as Celery prepends that result to the args."""
    names = list(leaf.parameters)
    if skip_first:
        if not names:
            raise InvalidRequest(FIELD, f"{leaf.name} takes no argument to receive the result "
                                 "before it: use .si() to receive nothing")
        if names[0] in kwargs:
            raise InvalidRequest(FIELD, f"{leaf.name}: {names[0]!r} gets the result before it "
                                 "and is given as a keyword too: drop it, or use .si()")
        names = names[1:]
    if len(args) > len(names):
        received = " besides the result before it" if skip_first else ""
        raise InvalidRequest(FIELD, f"{leaf.name} takes {len(names)} more argument(s)"
                             f"{received}, {len(args)} given")
    params = dict(zip(names, args, strict=False))
    clash = sorted(set(params) & set(kwargs))
    if clash:
        raise InvalidRequest(FIELD, f"{leaf.name}: {', '.join(clash)} given twice")
    return {**params, **kwargs}


def leaf_options(sig: Signature) -> dict[str, Any]:
    """A leaf's options: queue and priority are kept; the rest refused, each with its way."""
    kept: dict[str, Any] = {}
    for key, value in (sig.options or {}).items():
        if key in INERT or value is None:
            continue
        if key == "queue":
            kept["queue"] = str(getattr(value, "name", value))
        elif key == "priority":
            kept["priority"] = value
        elif key in REFUSED_OPTIONS:
            raise InvalidRequest(FIELD, f"{sig.task}: {key} is refused: {REFUSED_OPTIONS[key]}")
        else:
            raise InvalidRequest(FIELD, f"{sig.task}: option {key!r} is not supported in a "
                                 "canvas of Crisper jobs; a node takes queue= and priority= "
                                 "(sig.set(queue=..., priority=...))")
    return kept


def _no_options(sig: Signature, what: str) -> None:
    """Options on a chain, group or chord are refused: they belong on each signature."""
    given = sorted(k for k, v in (sig.options or {}).items() if v is not None and k not in INERT)
    if given:
        first = given[0]
        reason = REFUSED_OPTIONS.get(first, "set options on each signature instead "
                                            "(sig.set(queue=..., priority=...))")
        raise InvalidRequest(FIELD, f"{what}: {first} is refused: {reason}")
    if what == "chord" and (sig.kwargs.get("kwargs") or sig.args):
        raise InvalidRequest(FIELD, "chord arguments for the body are refused: give them to "
                                    "the body's signature")


def _title(sig: Any) -> str:
    """A workflow name from the canvas: its kind and first task."""
    kind = {"chain": "chain", "group": "group", "chord": "chord"}.get(
        str(getattr(sig, "subtask_type", "") or ""), "canvas")
    first = next(leaves(sig), None)
    return f"{kind}:{first.task}" if first is not None else kind
