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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from celery import canvas as celery_canvas
from celery.result import AsyncResult, GroupResult

from crisper.adoption.results import StoreBackend
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
from crisper.registry import JobType

if TYPE_CHECKING:
    from celery.canvas import Signature

    from crisper.app import Crisper
    from crisper.workflow_service import WorkflowView

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
        crisper = owner(self)
        if crisper is None:  # plain Celery tasks only: Celery's own canvas
            return original(self, args, kwargs, *rest, **options)
        if rest:
            raise InvalidRequest(FIELD, "give a canvas of Crisper jobs only args and kwargs")
        return apply_canvas(crisper, self, args, kwargs, options)
    return apply_async


def crisper_type(sig: Signature) -> JobType | None:
    """The Crisper job type a signature names: its own, or its app's of that name."""
    known = getattr(sig, "_type", None)
    if isinstance(known, JobType):
        return known
    app = getattr(known, "app", None) or sig.app
    crisper = getattr(app, "crisper", None)
    if crisper is not None and sig.task in crisper.registry:
        job_type: JobType = crisper.registry.get(sig.task)
        return job_type
    return None


def owner(sig: Signature) -> Crisper | None:
    """The Crisper app whose job types a canvas holds; None when it holds none."""
    found: Crisper | None = None
    for leaf in leaves(sig):
        job_type = crisper_type(leaf)
        if job_type is None:
            continue
        if found is not None and job_type.crisper is not found:
            raise InvalidRequest(FIELD, "job types of two Crisper apps in one canvas: a "
                                        "workflow belongs to one app")
        found = job_type.crisper
    return found


def apply_canvas(crisper: Crisper, sig: Signature, args: Any, kwargs: Any,
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
    plan = translate(sig, functools.partial(_leaf, crisper), tuple(args or ()), kwargs)
    view = crisper.workflows.submit(plan.workflow)
    return results(crisper, view, plan.result)


def apply_one(job_type: JobType, args: tuple[Any, ...], kwargs: dict[str, Any],
              options: dict[str, Any]) -> AsyncResult:
    """`.delay()`/`.apply_async()` of a Crisper job type's signature: one job (no workflow)."""
    sig = celery_canvas.Signature(job_type, args, kwargs,
                                  options={k: v for k, v in options.items() if v is not None})
    leaf = _leaf(job_type.crisper, sig)
    assert leaf is not None
    kept = leaf_options(sig)
    priority = kept.get("priority")
    params = bind_params(leaf, args, kwargs, skip_first=False)
    handle = job_type.crisper.submit(job_type.name, params, queue=kept.get("queue"),
                                     priority=None if priority is None else int(priority))
    return CanvasResult(str(handle.id), backend=backend_of(job_type.crisper),
                        app=job_type.crisper.celery)


def _leaf(crisper: Crisper, sig: Signature) -> Leaf | None:
    from crisper.adoption.tasks import AdoptedJobType

    job_type = crisper_type(sig)
    if job_type is None or job_type.crisper is not crisper:
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


def backend_of(crisper: Crisper) -> JobsBackend:
    backend: JobsBackend | None = getattr(crisper, "_canvas_backend", None)
    if backend is None:
        backend = JobsBackend(crisper, crisper.celery)
        crisper._canvas_backend = backend  # type: ignore[attr-defined]
    return backend


def results(crisper: Crisper, view: WorkflowView, shape: Shape) -> Any:
    """Celery's result objects for a submitted canvas, `.parent` links kept."""
    backend, app = backend_of(crisper), crisper.celery
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
