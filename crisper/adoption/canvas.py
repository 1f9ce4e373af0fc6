"""Celery's canvas on Crisper job types: stored as one workflow, answered like Celery.

`install()` puts a router in front of `apply_async` of Celery's chain, group and chord (and
of chunks and the maps, to refuse them): a canvas whose tasks are Crisper job types is
translated (crisper/canvas.py) and submitted as one workflow before anything runs; a canvas
of plain Celery tasks goes on to Celery's own code, untouched. What it returns is Celery's
AsyncResult (a chain: its last node's, `.parent` the one before; a chord: its callback's)
or GroupResult (a group, in order), read from the store: no result backend, no chord_unlock.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from celery import canvas as celery_canvas
from celery.result import AsyncResult, GroupResult

from crisper.adoption.results import StoreBackend, find_job
from crisper.canvas import (
    FIELD,
    Leaf,
    Many,
    One,
    Shape,
    bind_params,
    leaf_options,
    leaves,
    translate,
)
from crisper.errors import InvalidRequest
from crisper.registry import CeleryCalls, JobType, Registry
from crisper.service import SubmitRequest

if TYPE_CHECKING:
    from celery import Celery
    from celery.canvas import Signature

    from crisper.records import JobRecord
    from crisper.store import Store
    from crisper.workflow_service import WorkflowView
    from crisper.workflows import Workflow

# The attribute of a Celery app that holds its Crisper app's port (set by Crisper.celery):
# signatures made by task name, and the adopting consumer, find their job types through it.
PORT_ATTRIBUTE = "crisper_port"

ROUTED = (celery_canvas._chain, celery_canvas.group, celery_canvas._chord, celery_canvas.chunks,
          celery_canvas._basemap)
_originals: dict[type, Callable[..., Any]] = {}


def install() -> None:
    """Route canvases of Crisper job types here (once per process; Crisper() calls it)."""
    for cls in ROUTED:
        if cls not in _originals:
            _originals[cls] = cls.__dict__["apply_async"]
            cls.apply_async = _routed(_originals[cls])  # type: ignore[method-assign]


def _routed(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def apply_async(self: Signature, args: Any = None, kwargs: Any = None, *rest: Any,
                    **options: Any) -> Any:
        calls = owner(self)
        if calls is None:  # plain Celery tasks only: Celery's own canvas
            return original(self, args, kwargs, *rest, **options)
        if rest:
            raise InvalidRequest(FIELD, "give a canvas of Crisper jobs only args and kwargs")
        return calls.apply_canvas(self, args, kwargs, options)
    return apply_async


@dataclass
class CeleryPort:
    """What Celery's call surface uses of one Crisper app, as functions the app binds
    (app.py): its job types by name, submitting a job or a workflow, cancelling a job, its
    store (to answer Celery's result reads) and its Celery app (built on first use). Each job
    type of the app holds it as its `CeleryCalls`; adopted types, the adopting consumer and
    the result backend use the rest."""

    registry: Registry
    submit: Callable[[SubmitRequest], JobRecord]
    cancel: Callable[[uuid.UUID], object]
    submit_workflow: Callable[[Workflow], WorkflowView]
    store: Callable[[], Store]
    celery: Callable[[], Celery]

    def apply(self, job_type: JobType, args: tuple[Any, ...], kwargs: dict[str, Any],
              options: dict[str, Any]) -> AsyncResult:
        return apply_one(self, job_type, args, kwargs, options)

    def apply_canvas(self, sig: Signature, args: Any, kwargs: Any,
                     options: dict[str, Any]) -> Any:
        return apply_canvas(self, sig, args, kwargs, options)

    def find(self, task_id: object) -> JobRecord | None:
        """The job a Celery task id names, None if it names none."""
        return find_job(self.store(), task_id)

    @cached_property
    def backend(self) -> JobsBackend:
        """The result backend of canvas results (one per app)."""
        return JobsBackend(self.find, self.celery())


def crisper_type(sig: Signature) -> JobType | None:
    """The Crisper job type a signature names: its own, or its app's of that name."""
    known = getattr(sig, "_type", None)
    if isinstance(known, JobType):
        return known
    app = getattr(known, "app", None) or sig.app
    port = getattr(app, PORT_ATTRIBUTE, None)
    if isinstance(port, CeleryPort) and sig.task in port.registry:
        return port.registry.get(sig.task)
    return None


def owner(sig: Signature) -> CeleryCalls | None:
    """The Celery calls of the app whose job types a canvas holds; None when it holds none."""
    found: CeleryCalls | None = None
    for leaf in leaves(sig):
        job_type = crisper_type(leaf)
        if job_type is None:
            continue
        if found is not None and job_type.celery_calls is not found:
            raise InvalidRequest(FIELD, "job types of two Crisper apps in one canvas: a "
                                        "workflow belongs to one app")
        found = job_type.celery_calls
    return found


def apply_canvas(port: CeleryPort, sig: Signature, args: Any, kwargs: Any,
                 options: dict[str, Any]) -> Any:
    """Store the canvas as one workflow (one transaction); answer Celery's result."""
    given = sorted(k for k, v in options.items() if v is not None and k != "add_to_parent")
    if given:
        raise InvalidRequest(FIELD, f"{given[0]} is refused when applying a canvas of Crisper "
                             "jobs: set options on each signature (sig.set(queue=..., "
                             "priority=...))")
    kwargs = dict(kwargs or {})
    if isinstance(sig, celery_canvas._chord) and kwargs.get("body") is not None:
        sig = celery_canvas.chord(list(sig.tasks), kwargs.pop("body"))  # chord(header)(body)
    plan = translate(sig, functools.partial(_leaf, port), tuple(args or ()), kwargs)
    view = port.submit_workflow(plan.workflow)
    return results(port, view, plan.result)


def apply_one(port: CeleryPort, job_type: JobType, args: tuple[Any, ...],
              kwargs: dict[str, Any], options: dict[str, Any]) -> AsyncResult:
    """`.delay()`/`.apply_async()` of a Crisper job type's signature: one job (no workflow)."""
    sig = celery_canvas.Signature(job_type, args, kwargs,
                                  options={k: v for k, v in options.items() if v is not None})
    leaf = _leaf(port, sig)
    assert leaf is not None
    kept = leaf_options(sig)
    priority = kept.get("priority")
    params = bind_params(leaf, args, kwargs, skip_first=False)
    record = port.submit(SubmitRequest(type=job_type.name, params=params,
                                       queue=kept.get("queue"),
                                       priority=None if priority is None else int(priority)))
    return CanvasResult(str(record.id), backend=port.backend, app=port.celery())


def _leaf(calls: CeleryCalls, sig: Signature) -> Leaf | None:
    from crisper.adoption.tasks import AdoptedJobType

    job_type = crisper_type(sig)
    if job_type is None or job_type.celery_calls is not calls:
        return None
    priority: Callable[[int], int] = int
    if isinstance(job_type, AdoptedJobType):  # Celery's meaning on the app's broker
        priority = functools.partial(_celery_priority, job_type)
    return Leaf(job_type.name, tuple(job_type.parameters()), priority)


def _celery_priority(job_type: Any, value: int) -> int:
    return int(job_type._priority(value))


# -- results --------------------------------------------------------------------------------

class CanvasResult(AsyncResult):  # type: ignore[misc]
    """Celery's AsyncResult of one node, read from the store; `workflow_id` names the graph."""

    workflow_id: Any = None


class CanvasGroupResult(GroupResult):  # type: ignore[misc]
    """Celery's GroupResult of a group's nodes (its id: the workflow's); `.get()` gives their
    results in order, each read from the store."""

    workflow_id: Any = None

    @property
    def supports_native_join(self) -> bool:
        return False


class JobsBackend(StoreBackend):
    """The store as a result backend for canvas results, whose every id is a Crisper job: no
    per-result registration (a GroupResult of a hundred is built without a read)."""

    def add_pending_result(self, result: Any, weak: bool = False) -> Any:
        return result

    def remove_pending_result(self, result: Any) -> Any:
        return result


def results(port: CeleryPort, view: WorkflowView, shape: Shape) -> Any:
    """Celery's result objects for a submitted canvas, `.parent` links kept."""
    backend, app = port.backend, port.celery()
    built: dict[int, Any] = {}

    def build(part: Shape | None) -> Any:
        if part is None:
            return None
        if id(part) not in built:
            parent = build(part.parent)
            made: Any
            if isinstance(part, One):
                made = CanvasResult(str(view.node_ids[part.node]), backend=backend, app=app,
                                    parent=parent)
            else:
                assert isinstance(part, Many)
                made = CanvasGroupResult(str(view.id), [build(m) for m in part.members],
                                         parent=parent, app=app)
            made.workflow_id = view.id
            built[id(part)] = made
        return built[id(part)]

    return build(shape)
