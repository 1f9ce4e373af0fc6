"""Job types: the decorated function, its options, and its parameter schema from the signature."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from crisper.durations import Duration, option_seconds
from crisper.errors import ConfigurationError, InvalidParams, UnknownJobType
from crisper.flow.limits import FlowOptions
from crisper.names import declared_queues, json_problem, queue_problem
from crisper.priorities import priority_problem
from crisper.retention import Retention
from crisper.retry import Retry

if TYPE_CHECKING:
    from celery.canvas import Signature
    from celery.result import AsyncResult
    from sqlalchemy.orm import Session

    from crisper.handle import JobHandle

# Names that submit() takes as options, so a job type may not use them as parameters.
RESERVED_PARAMS = frozenset(
    {"session", "queue", "priority", "delay", "run_at", "hold", "idempotency_key", "tags",
     "tenant", "max_attempts", "unique_key", "on_duplicate", "metadata", "soft_time_limit",
     "time_limit"}
)
DEFAULT_QUEUE = "default"


@dataclass(frozen=True)
class JobOptions:
    queue: str = DEFAULT_QUEUE
    priority: int = 0
    timeout: float | None = None  # the soft limit: SoftTimeLimitExceeded in the body
    # The hard limit (the process is killed); None: timeout + the app's kill_grace_seconds.
    hard_timeout: float | None = None
    # Seconds a running job may ignore a cancel; None: the app's cancel_grace_seconds.
    cancel_grace: float | None = None
    retry: Retry = field(default_factory=Retry)
    flow: FlowOptions = field(default_factory=FlowOptions)
    # Own retention per final state (None: the app's retention_seconds for every state).
    retention: Retention | None = None

    def kill_grace(self, default: float) -> float:
        """Seconds from the soft limit to the hard one: the type's own, else `default`."""
        if self.hard_timeout is None or self.timeout is None:
            return default
        return self.hard_timeout - self.timeout


class Submit(Protocol):
    """The app's submit (`Crisper.submit`): one job of the named type, as a handle."""

    def __call__(self, type: str, params: dict[str, Any] | None = None, *,
                 session: Session | None = None, **options: Any) -> JobHandle: ...


class CeleryCalls(Protocol):
    """Celery's call surface of the app that registered a type (crisper/adoption/canvas.py):
    `.delay()` as one job answered as an AsyncResult, and a canvas of the app's types as one
    workflow (the canvas router finds it through the types a canvas holds)."""

    def apply(self, job_type: JobType, args: tuple[Any, ...], kwargs: dict[str, Any],
              options: dict[str, Any]) -> AsyncResult: ...

    def apply_canvas(self, sig: Signature, args: Any, kwargs: Any,
                     options: dict[str, Any]) -> Any: ...


class JobType:
    """A registered function and its options; `submit()` makes a job of this type.

    The app that registers it binds `submit` and `celery_calls` (app.py): a type reaches its
    app only through those two, so the registry sits below the services and the app."""

    def __init__(self, func: Callable[..., Any], name: str, options: JobOptions, *,
                 submit: Submit, celery_calls: CeleryCalls) -> None:
        self._submit = submit
        self.celery_calls = celery_calls
        self.func = func
        self.name = name
        self.options = options
        self.params_model = _params_model(func, name)
        self.description = inspect.getdoc(func) or ""
        self._partial: type[BaseModel] | None = None  # the schema less its first parameter

    def __repr__(self) -> str:
        return f"<JobType {self.name} queue={self.options.queue}>"

    def validate(self, params: dict[str, Any], *, given_later: bool = False) -> dict[str, Any]:
        """Params as JSON-ready values, or InvalidParams naming each bad field.

        `given_later`: the first parameter is left out, to be given a parent's result when the
        job runs (a workflow node that delivers: Celery's canvas rule)."""
        self._check_storable(params)
        schema = self._partial_model() if given_later else self.params_model
        try:
            model = schema.model_validate(params)
        except ValidationError as exc:
            errors = [
                {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()
            ]
            raise InvalidParams(self.name, errors) from None
        clean: dict[str, Any] = model.model_dump(mode="json")
        self._check_storable(clean)
        return clean

    def _check_storable(self, params: Any) -> None:
        """Before and after the schema: depth, NUL and lone surrogates (they 500 elsewhere)."""
        problem = json_problem(params)
        if problem is not None:
            loc, msg, kind = problem
            raise InvalidParams(self.name, [{"loc": loc, "msg": msg, "type": kind}])

    def parameters(self) -> list[str]:
        """The parameter names, in the function's order (ctx, or a bound self, left out)."""
        return list(self.params_model.model_fields)

    def _partial_model(self) -> type[BaseModel]:
        """The schema without the first parameter (built once per type)."""
        partial = self._partial
        if partial is None:
            names = self.parameters()
            if not names:
                raise InvalidParams(self.name, [{"loc": [], "msg": "takes no parameter to "
                                                 "receive a result in", "type": "value_error"}])
            fields = {n: (f.annotation, f) for n, f in self.params_model.model_fields.items()
                      if n != names[0]}
            partial = self._partial = create_model(
                f"{self.name}_partial", __config__=ConfigDict(extra="forbid"),
                **fields)  # type: ignore[call-overload]
        return partial

    # -- Celery's signatures, for canvas (crisper/canvas.py) ----------------------------------

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A Celery signature of this type: chain, group and chord them into one workflow;
        positional args fill the parameters after ctx, in order."""
        from celery.canvas import Signature

        return Signature(self, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: in a canvas it receives no parent's result."""
        from celery.canvas import Signature

        return Signature(self, args, kwargs, immutable=True)

    def signature(self, args: Any = None, kwargs: Any = None, **options: Any) -> Signature:
        from celery.canvas import Signature

        return Signature(self, args, kwargs, **options)

    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> AsyncResult:
        """Celery's call surface on a Crisper type: one job, its result Celery-like."""
        return self.celery_calls.apply(self, tuple(args or ()), dict(kwargs or {}), options)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def json_schema(self) -> dict[str, Any]:
        return self.params_model.model_json_schema()

    def submit(self, **kwargs: Any) -> JobHandle:
        """Submit a job; options (session, delay, run_at, hold, ...) and params are keywords."""
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in RESERVED_PARAMS}
        return self._submit(self.name, kwargs, **options)

    def __call__(self, ctx: Any, **params: Any) -> Any:
        """Call the function directly (for tests), with a context of your own."""
        return self.func(ctx, **params)


def _params_model(func: Callable[..., Any], name: str) -> type[BaseModel]:
    params = list(inspect.signature(func).parameters.values())
    if not params:
        raise ConfigurationError(f"job type {name!r}: the function must take a ctx first argument")
    fields: dict[str, Any] = {}
    for p in params[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ConfigurationError(f"job type {name!r}: *args/**kwargs are not allowed")
        if p.name in RESERVED_PARAMS:
            raise ConfigurationError(
                f"job type {name!r}: parameter {p.name!r} is reserved for submit options; rename it"
            )
        annotation = Any if p.annotation is inspect.Parameter.empty else p.annotation
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (annotation, default)
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=False)
    model: type[BaseModel] = create_model(f"{name}_params", __config__=config, **fields)
    return model


class Registry:
    """The job types one Crisper app knows, by name."""

    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}

    def add(self, job_type: JobType) -> None:
        if job_type.name in self._types:
            raise ConfigurationError(f"job type {job_type.name!r} is registered twice")
        self._types[job_type.name] = job_type

    def get(self, name: str) -> JobType:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownJobType(name, list(self._types)) from None

    def names(self) -> list[str]:
        return sorted(self._types)

    def __iter__(self) -> Iterator[JobType]:
        return iter(self._types.values())

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def declared_queues(self, configured: Iterable[str]) -> list[str]:
        """The queues a submit may name: the job types', the `configured` ones and the default."""
        return declared_queues((t.options.queue for t in self), configured, DEFAULT_QUEUE)


def job_options(
    queue: str = DEFAULT_QUEUE,
    priority: int = 0,
    timeout: Duration | tuple[Duration, Duration] | None = None,
    retry: Retry | int | None = None,
    cancel_grace: Duration | None = None,
) -> JobOptions:
    """`timeout` is the soft limit, or (soft, hard): `("1h55m", "2h")`."""
    soft, hard = _limits(timeout)
    if isinstance(retry, int):
        retry = Retry(attempts=retry)
    if (problem := priority_problem(priority)) is not None:
        raise ConfigurationError(f"priority {problem}")
    problem = queue_problem(queue)
    if problem is not None:
        raise ConfigurationError(f"queue: {problem}")
    return JobOptions(
        queue=queue,
        priority=priority,
        timeout=soft,
        hard_timeout=hard,
        cancel_grace=option_seconds("cancel_grace", cancel_grace, zero_ok=True),
        retry=retry or Retry(),
    )


def _limits(timeout: Duration | tuple[Duration, Duration] | None
            ) -> tuple[float | None, float | None]:
    """(soft, hard) seconds; the hard limit must come after the soft one."""
    if not isinstance(timeout, tuple):
        return option_seconds("timeout", timeout), None
    if len(timeout) != 2:
        raise ConfigurationError("timeout: give one duration or (soft, hard)")
    soft, hard = option_seconds("timeout", timeout[0]), option_seconds("timeout", timeout[1])
    assert soft is not None and hard is not None
    if hard <= soft:
        raise ConfigurationError(f"timeout: the hard limit ({hard:g} s) must come after the "
                                 f"soft one ({soft:g} s)")
    return soft, hard
