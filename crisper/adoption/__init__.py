"""Adopting Crisper in an existing Celery app (docs/migrating-from-celery.md).

`Crisper("proj", celery=app)` calls `adopt()`: Crisper uses the app's broker, routes and
configuration, installs its result backend and revoke in front of the app's, its consumer
(which adopts old-format messages for moved tasks) and its worker presence, and registers
its job types as the app's tasks at once, so `celery -A proj worker` runs them unchanged.
`@crisper.job` then accepts Celery-style functions and options (`define_job()`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crisper.adoption.options import crisper_priority, map_options
from crisper.adoption.tasks import AdoptedJobType, celery_style, current_job, runnable
from crisper.errors import ConfigurationError

if TYPE_CHECKING:
    from celery import Celery

    from crisper.app import Crisper
    from crisper.registry import JobType

__all__ = ["AdoptedJobType", "adopt", "current_job", "define_job", "celery_queue"]
ADOPTING_CONSUMER = "crisper.adoption.consumer:Consumer"
# Options that need the coordination Redis (flow control's shared counters).
NEEDS_REDIS = ("rate_limit",)


def adopt(crisper: Crisper, app: Celery) -> None:
    """Wrap `app`: its broker becomes Crisper's, its worker learns Crisper's tasks."""
    from crisper.adoption.results import install
    from crisper.engine.celery_app import CELERY_CONSUMER, HARDENED_CONSUMER
    from crisper.engine.worker import WorkerPresence

    update: dict[str, Any] = {"queues": sorted({*crisper.settings.queues, *app_queues(app)})}
    if crisper.settings.broker_url is None and app.conf.broker_url:
        update["broker_url"] = str(app.conf.broker_url)
    crisper.settings = crisper.settings.model_copy(update=update)
    if app.conf.worker_consumer in (None, CELERY_CONSUMER, HARDENED_CONSUMER):
        app.conf.worker_consumer = ADOPTING_CONSUMER
    app.crisper = crisper  # type: ignore[attr-defined]  # read by the adopting consumer
    crisper.celery  # noqa: B018 - build it now: its tasks must exist before a worker starts
    install(crisper, app)
    presence = WorkerPresence(crisper.store, crisper.settings)
    presence.connect()
    crisper.presence = presence  # type: ignore[attr-defined]


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


def define_job(crisper: Crisper, func: Callable[..., Any], given: dict[str, Any],
               celery_options: dict[str, Any]) -> JobType:
    """Register `func`, declared Crisper's way or Celery's, on an app that wraps Celery."""
    from crisper.engine.celery_app import is_redis

    if crisper._existing_celery is None:
        raise ConfigurationError(
            f"unknown option(s) {', '.join(sorted(celery_options))}: Celery's task options "
            "are accepted on an app that wraps a Celery app, Crisper(name, celery=app) "
            "(docs/migrating-from-celery.md)")
    app = crisper.celery
    name = given.get("name") or celery_options.pop("name", None) or _default_name(func)
    given = {**given, "name": name}
    if given.get("queue") is None:
        given["queue"] = celery_queue(app, name)
    _check_redis(crisper, name, {**given, **celery_options})
    if not celery_style(func, celery_options):
        return crisper.define(func, **given)
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
    job_type = crisper.define(body, job_class=AdoptedJobType, **given)
    assert isinstance(job_type, AdoptedJobType)
    job_type.original = func
    job_type.bind = mapped.bind
    job_type.max_retries = mapped.max_retries
    job_type.default_retry_delay = mapped.default_retry_delay
    holder.append(job_type)
    from crisper.adoption.beat import honour_beat

    honour_beat(crisper, app, job_type)
    return job_type


def _default_name(func: Callable[..., Any]) -> str:
    """Celery's default task name: module.function."""
    return f"{func.__module__}.{func.__name__}"


def _check_redis(crisper: Crisper, name: str, options: dict[str, Any]) -> None:
    """Flow control keeps its counters in Redis: with none, refuse it now, not at run time."""
    if crisper.settings.resolved_redis_url() is not None:
        return
    needed = [k for k in NEEDS_REDIS if options.get(k) is not None]
    if needed:
        raise ConfigurationError(
            f"job type {name!r}: {', '.join(needed)} needs a Redis for its shared counters, "
            "and the app's broker is not Redis: set CRISPER_REDIS_URL (redis://…)")
