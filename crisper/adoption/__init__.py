"""Adopting Crisper in an existing Celery app (docs/migrating-from-celery.md).

`Crisper("proj", celery=app)` takes the app's broker and queues (`adopted_settings()`) and
calls `adopt()`: Crisper installs its result backend and revoke in front of the app's and its
consumer (which adopts old-format messages for moved tasks), and registers its job types as
the app's tasks at once, so `celery -A proj worker` runs them unchanged. `@crisper.job` then
accepts Celery-style functions and options (`define_job()`). The Crisper app hands these
functions the parts they use (`Adopted`, its `CeleryPort`), never itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from crisper.adoption.canvas import CeleryPort
from crisper.adoption.options import crisper_priority, map_options
from crisper.adoption.tasks import AdoptedJobType, celery_style, current_job, runnable
from crisper.errors import ConfigurationError

if TYPE_CHECKING:
    from celery import Celery

    from crisper.registry import JobType
    from crisper.schedules import CodeSchedule
    from crisper.settings import Settings

__all__ = ["AdoptedJobType", "Adopted", "adopt", "adopted_settings", "current_job",
           "define_job", "celery_queue"]
ADOPTING_CONSUMER = "crisper.adoption.consumer:Consumer"
# Options that need the coordination Redis (flow control's shared counters).
NEEDS_REDIS = ("rate_limit",)


class Declare(Protocol):
    """The app's schedule declaration (`Crisper.schedule`), for beat entries taken over."""

    def __call__(self, name: str, type: str, cron: str, params: dict[str, Any] | None = None,
                 *, tz: str = "UTC", queue: str | None = None) -> CodeSchedule: ...


@dataclass
class Adopted:
    """What adoption uses of the Crisper app that wraps a Celery app, bound by that app
    (app.py): its Celery port, its `define` and `schedule`, and its Redis URL (flow control's
    counters); `beat_entries` records the beat entries taken over (schedule name -> entry)."""

    port: CeleryPort
    define: Callable[..., JobType]
    declare: Declare
    redis_url: Callable[[], str | None]
    beat_entries: dict[str, str] = field(default_factory=dict)


def adopted_settings(settings: Settings, app: Celery) -> Settings:
    """Crisper's settings on a wrapped app: its queues added, its broker unless one is set."""
    update: dict[str, Any] = {"queues": sorted({*settings.queues, *app_queues(app)})}
    if settings.broker_url is None and app.conf.broker_url:
        update["broker_url"] = str(app.conf.broker_url)
    return settings.model_copy(update=update)


def adopt(app: Celery, port: CeleryPort) -> None:
    """Wrap `app` (its Crisper settings already adopted): its worker learns Crisper's tasks and
    consumer, its result backend and revoke answer for Crisper's jobs."""
    from crisper.adoption.results import install
    from crisper.engine.celery_app import CELERY_CONSUMER, HARDENED_CONSUMER

    if app.conf.worker_consumer in (None, CELERY_CONSUMER, HARDENED_CONSUMER):
        app.conf.worker_consumer = ADOPTING_CONSUMER
    port.celery()  # build it now: its tasks must exist before a worker starts
    install(app, port.find, port.cancel)


def app_queues(app: Celery) -> list[str]:
    """The queues the app names: its default, its declared queues, its routes' (dict form),
    so that `crisper worker` consumes them by default and moved jobs may be sent there."""
    names = {str(app.conf.task_default_queue or "celery")}
    names.update(str(q.name) for q in (app.conf.task_queues or ()))
    routes = app.conf.task_routes
    for table in routes if isinstance(routes, list | tuple) else [routes]:
        if isinstance(table, dict):
            names.update(str(r["queue"]) for r in table.values()
                         if isinstance(r, dict) and isinstance(r.get("queue"), str))
    return sorted(names)


def celery_queue(app: Celery, task_name: str) -> str:
    """The queue Celery would send `task_name` to: task_routes, then task_default_queue."""
    route = app.amqp.router.route({}, task_name, (), {})
    queue = route.get("queue")
    name = getattr(queue, "name", queue)
    return str(name or app.conf.task_default_queue or "celery")


def define_job(adopted: Adopted | None, func: Callable[..., Any], given: dict[str, Any],
               celery_options: dict[str, Any]) -> JobType:
    """Register `func`, declared Crisper's way or Celery's, on an app that wraps Celery."""
    from crisper.engine.celery_app import is_redis

    if adopted is None:
        raise ConfigurationError(
            f"unknown option(s) {', '.join(sorted(celery_options))}: Celery's task options "
            "are accepted on an app that wraps a Celery app, Crisper(name, celery=app) "
            "(docs/migrating-from-celery.md)")
    app = adopted.port.celery()
    name = given.get("name") or celery_options.pop("name", None) or _default_name(func)
    given = {**given, "name": name}
    if given.get("queue") is None:
        given["queue"] = celery_queue(app, name)
    _check_redis(adopted.redis_url(), name, {**given, **celery_options})
    if not celery_style(func, celery_options):
        return adopted.define(func, **given)
    mapped = map_options(name, celery_options)
    for key, value in mapped.crisper.items():
        if key == "retry" and given.get("retry") is not None:
            continue  # Crisper's own retry= wins over Celery's options
        given[key] = value
    # Celery's meaning, 0 (its default) included: on Redis 0 is the first served.
    given["priority"] = crisper_priority(int(given.get("priority") or 0),
                                         is_redis(app.conf.broker_url or ""),
                                         app.conf.task_queue_max_priority or 255)
    holder: list[AdoptedJobType] = []
    body = runnable(func, name, mapped.bind, lambda: holder[0])
    job_type = adopted.define(body, job_class=AdoptedJobType, **given)
    assert isinstance(job_type, AdoptedJobType)
    job_type.port = adopted.port
    job_type.original = func
    job_type.bind = mapped.bind
    job_type.max_retries = mapped.max_retries
    job_type.default_retry_delay = mapped.default_retry_delay
    holder.append(job_type)
    from crisper.adoption.beat import honour_beat

    honour_beat(adopted, app, job_type)
    return job_type


def _default_name(func: Callable[..., Any]) -> str:
    """Celery's default task name: module.function."""
    return f"{func.__module__}.{func.__name__}"


def _check_redis(redis_url: str | None, name: str, options: dict[str, Any]) -> None:
    """Flow control keeps its counters in Redis: with none, refuse it now, not at run time."""
    if redis_url is not None:
        return
    needed = [k for k in NEEDS_REDIS if options.get(k) is not None]
    if needed:
        raise ConfigurationError(
            f"job type {name!r}: {', '.join(needed)} needs a Redis for its shared counters, "
            "and the app's broker is not Redis: set CRISPER_REDIS_URL (redis://…)")
