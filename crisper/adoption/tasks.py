"""A moved task: a Celery-style function run as a Crisper job, with Celery's call surface.

The function keeps its own signature (no `ctx`): it reaches its job context through
`current_job()`, or through `self.job` when declared with `bind=True`, where `self.retry()`
schedules the next attempt as a database timer.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from celery.exceptions import MaxRetriesExceededError

from crisper.adoption.options import crisper_priority
from crisper.errors import ConfigurationError, InvalidRequest
from crisper.ids import parse_id
from crisper.registry import JobType
from crisper.service import SubmitRequest

if TYPE_CHECKING:
    from celery.canvas import Signature
    from celery.result import AsyncResult

    from crisper.adoption.canvas import CeleryPort
    from crisper.engine.context import JobContext

_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar(
    "crisper_current_job", default=None)
IDEMPOTENCY_PREFIX = "celery:"


def current_job() -> JobContext:
    """The running job's context (progress, logger, cancel checks), for a function without
    `ctx`. RuntimeError outside a job."""
    ctx = _current.get()
    if ctx is None:
        raise RuntimeError("current_job() is only available inside a running Crisper job")
    return ctx


class RetryLater(Exception):
    """Raised by `self.retry()`: retry this job after `retry_delay` seconds (the runner reads
    the attribute), or the type's back-off when None."""

    def __init__(self, message: str, retry_delay: float | None, cause: BaseException | None):
        super().__init__(message)
        self.retry_delay = retry_delay
        self.cause = cause


class Request:
    """The parts of Celery's `self.request` that task bodies commonly read."""

    def __init__(self, ctx: JobContext) -> None:
        self.id = str(ctx.job_id)
        self.retries = ctx.attempt - 1
        self.task = ctx.job_type


class BoundTask:
    """What a `bind=True` function gets as `self`: the job context, `request`, `retry()`."""

    def __init__(self, job_type: AdoptedJobType, ctx: JobContext) -> None:
        self.job = ctx
        self.name = job_type.name
        self.app = job_type.port.celery()
        self.request = Request(ctx)
        self.max_retries = job_type.max_retries
        self.default_retry_delay = job_type.default_retry_delay
        self._job_type = job_type

    def retry(self, args: Any = None, kwargs: Any = None, exc: BaseException | None = None,
              throw: bool = True, eta: datetime | None = None, countdown: float | None = None,
              max_retries: int | None = None, **_options: Any) -> RetryLater:
        """Schedule the next attempt (a database timer) and stop this one, as Celery does.

        Past the type's attempts, `exc` is raised again (or MaxRetriesExceededError). New
        args/kwargs for the retry are refused: a job's params are fixed when it is created.
        """
        if args is not None or kwargs is not None:
            raise InvalidRequest("retry", "a job retries with its own params; new args/kwargs "
                                 "are not supported")
        limit = self.job.max_attempts if max_retries is None else min(
            self.job.max_attempts, max_retries + 1)
        if self.job.attempt >= limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(f"{self.name} {self.request.id}: retried "
                                          f"{self.request.retries} time(s)")
        delay = countdown
        if eta is not None:
            delay = max(0.0, (_aware(eta) - datetime.now(UTC)).total_seconds())
        if delay is None:
            delay = self.default_retry_delay
        raise RetryLater(f"retry requested: {exc!r}" if exc else "retry requested", delay, exc)


class AdoptedJobType(JobType):
    """A job type declared Celery-style: Celery's call surface on top of Crisper's submit."""

    original: Callable[..., Any]
    port: CeleryPort  # its app's, given by define_job() (crisper/adoption/__init__.py)
    bind: bool = False
    max_retries: int | None = 3
    default_retry_delay: float = 180.0

    # -- Celery's call surface ----------------------------------------------------------------

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def apply_async(self, args: Any = None, kwargs: Any = None, *,
                    countdown: float | None = None, eta: datetime | None = None,
                    expires: float | datetime | None = None, queue: Any = None,
                    priority: int | None = None, task_id: str | None = None,
                    **_options: Any) -> AsyncResult:
        """Create the durable job; countdown/eta become a database timer (never broker ETA).
        Callbacks (link, link_error, chain, chord options) are refused: a job does not run
        them; chain(...), group(...), chord(...) and `|` build a workflow instead."""
        canvas = sorted(k for k in ("link", "link_error", "chain", "chord") if _options.get(k))
        if canvas:
            raise InvalidRequest(canvas[0], f"{self.name} is a Crisper job: callbacks are not "
                                 "run; build the canvas with chain(...), | , group(...) or "
                                 "chord(...): it runs as one workflow (docs/workflows.md)")
        record = self.port.submit(self.request_for(
            args, kwargs, countdown=countdown, eta=eta, expires=expires, queue=queue,
            priority=priority, task_id=task_id))
        return self.port.celery().AsyncResult(str(record.id) if task_id is None else task_id)

    def request_for(self, args: Any, kwargs: Any, *, countdown: float | None = None,
                    eta: datetime | str | None = None,
                    expires: float | datetime | str | None = None, queue: Any = None,
                    priority: int | None = None, task_id: str | None = None,
                    celery_priority: bool = True) -> SubmitRequest:
        """A submit request from Celery's arguments (shared with the adopting consumer)."""
        from crisper.adoption.results import EXPIRES_KEY

        params = self.bind_params(tuple(args or ()), dict(kwargs or {}))
        run_at = _aware(eta) if eta is not None else None
        if countdown is not None:
            run_at = _in_seconds(float(countdown))
        metadata = {}
        if expires is not None:
            metadata[EXPIRES_KEY] = _expiry(expires).isoformat()
        job_id = parse_id(task_id) if task_id is not None else None
        return SubmitRequest(
            type=self.name, params=params, run_at=run_at,
            queue=getattr(queue, "name", queue) or None,
            priority=self._priority(priority) if celery_priority else priority,
            job_id=job_id, metadata=metadata or None,
            idempotency_key=None if task_id is None else f"{IDEMPOTENCY_PREFIX}{task_id}")

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        from celery.canvas import Signature

        return Signature(self, args, kwargs, app=self.port.celery())

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        from celery.canvas import Signature

        return Signature(self, args, kwargs, immutable=True, app=self.port.celery())

    signature = s

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function here and now, as calling a Celery task does (no job is made)."""
        return self.original(*args, **kwargs)

    # -- internals ----------------------------------------------------------------------------

    def bind_params(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Positional args bound to the function's parameter names."""
        sig = inspect.signature(self.original)
        names = list(sig.parameters)[1:] if self.bind else list(sig.parameters)
        if len(args) > len(names):
            raise InvalidRequest("args", f"{self.name} takes {len(names)} argument(s), "
                                 f"{len(args)} given")
        params = dict(zip(names, args, strict=False))
        clash = sorted(set(params) & set(kwargs))
        if clash:
            raise InvalidRequest("kwargs", f"{', '.join(clash)} given twice")
        return {**params, **kwargs}

    def _priority(self, priority: int | None) -> int | None:
        from crisper.engine.celery_app import is_redis

        conf = self.port.celery().conf
        return crisper_priority(priority, is_redis(conf.broker_url or ""),
                                conf.task_queue_max_priority or 255)


def celery_style(func: Callable[..., Any], celery_options: dict[str, Any]) -> bool:
    """Declared the Celery way: Celery options given, or a first parameter that is not ctx."""
    params = list(inspect.signature(func).parameters)
    return bool(celery_options) or not params or params[0] != "ctx"


def runnable(func: Callable[..., Any], name: str, bind: bool,
             type_of: Callable[[], AdoptedJobType]) -> Callable[..., Any]:
    """A ctx-first function for the runner that calls `func` the Celery way; its signature
    (for the parameter schema) is ctx followed by func's own parameters."""
    sig = inspect.signature(func)
    params = list(sig.parameters.values())[1:] if bind else list(sig.parameters.values())
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ConfigurationError(f"job type {name!r}: *args/**kwargs cannot be stored as "
                                     "params; name each parameter")
    ctx_param = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD)

    def run(ctx: JobContext, **params: Any) -> Any:
        from crisper.adoption.results import check_expiry

        token = _current.set(ctx)
        try:
            check_expiry(type_of(), ctx)
            if bind:
                return func(BoundTask(type_of(), ctx), **params)
            return func(**params)
        finally:
            _current.reset(token)

    run.__signature__ = sig.replace(parameters=[ctx_param, *params])  # type: ignore[attr-defined]
    run.__doc__ = func.__doc__
    run.__name__ = getattr(func, "__name__", name)
    run.__module__ = getattr(func, "__module__", __name__)
    return run


def _aware(when: datetime | str) -> datetime:
    """Celery's eta: a datetime or ISO text; naive ones are UTC (Celery's default zone)."""
    value = datetime.fromisoformat(when) if isinstance(when, str) else when
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _in_seconds(delay: float) -> datetime:
    return datetime.fromtimestamp(datetime.now(UTC).timestamp() + delay, UTC)


def _expiry(expires: float | datetime | str) -> datetime:
    return _in_seconds(float(expires)) if isinstance(expires, int | float) else _aware(expires)
