"""Build (or adopt) the Celery app that carries Crisper's wake-up messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from celery import Celery

from crisper.errors import ConfigurationError
from crisper.priorities import BROKER_LEVELS, broker_level

if TYPE_CHECKING:
    from crisper.registry import JobType
    from crisper.settings import Settings

HARDENED_REDIS = "crisper.engine.transport:Transport"
HARDENED_CONSUMER = "crisper.engine.consumer:Consumer"
CELERY_CONSUMER = "celery.worker.consumer:Consumer"
# How a task runs its message: (job type, the message's job ids, Celery's request) → Runner.run
RunMessage = Callable[["JobType", list[str], Any], None]
TASK_DEFAULTS: dict[str, Any] = {
    # The database decides what runs; the message only has to survive until a claim.
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "serializer": "json",
}


def make_celery(name: str, settings: Settings, existing: Celery | None = None) -> Celery:
    """A Celery app named `name`: the user's own one if given (its broker and config kept)."""
    if existing is not None:
        app = existing
    else:
        broker = settings.resolved_broker_url()
        if broker is None:
            raise ConfigurationError(
                "no broker: set CRISPER_BROKER_URL (redis://… or amqp://…), or run `crisper up` "
                "to start the embedded one"
            )
        app = Celery(name, broker=broker, set_as_current=False)
        app.conf.update(
            task_serializer="json",
            accept_content=["json"],
            result_serializer="json",
            result_backend=None,
            task_ignore_result=True,
            worker_prefetch_multiplier=1,
            task_default_queue="default",
            task_create_missing_queues=True,
            broker_connection_retry_on_startup=True,
            broker_connection_timeout=3,
            # A Redis that cannot persist (full disk: MISCONF) refuses BRPOP; reconnect and wait
            # for it instead of letting the worker die on that answer.
            broker_channel_error_retry=is_redis(broker),
            worker_hijack_root_logger=False,
            worker_send_task_events=False,
            task_queue_max_priority=BROKER_LEVELS,  # RabbitMQ: queues declared with x-max-priority
            broker_transport_options=_transport_options(broker, settings),
        )
    # No bytes on a queue stop a worker: checked in the transport (Redis) and the consumer.
    if is_redis(app.conf.broker_url or "") and not app.conf.broker_transport:
        app.conf.broker_transport = HARDENED_REDIS
    if app.conf.worker_consumer in (None, CELERY_CONSUMER):
        app.conf.worker_consumer = HARDENED_CONSUMER
    return app


def _transport_options(broker: str, settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {"socket_connect_timeout": 3}
    if is_redis(broker):
        if settings.broker_prefix:
            options["global_keyprefix"] = settings.broker_prefix
        # One Redis list per broker level (0..BROKER_LEVELS, not kombu's 4 buckets), popped
        # strictly in order; the queues a worker consumes are tried in the order given
        # (-Q a,b: a first).
        options.update(priority_steps=list(range(BROKER_LEVELS + 1)),
                       queue_order_strategy="priority")
    return {**options, **settings.broker_transport_options}


def register_task(app: Celery, job_type: JobType, settings: Settings, run_message: RunMessage
                  ) -> None:
    """Each job type is a Celery task underneath; its body is Crisper's runner."""
    # No Celery time limits: a wake-up runs many jobs, each under its own limits, which the
    # runner enforces (engine/time_guard.py).
    def run(self: Any, job_ids: list[str]) -> None:
        run_message(job_type, job_ids, self.request)

    run.__name__ = job_type.name.replace(".", "_")
    run.__doc__ = job_type.description
    # shared=False: the task belongs to this Celery app only, not to every app built later.
    app.task(name=job_type.name, bind=True, shared=False, **TASK_DEFAULTS)(run)


def broker_priority(app: Celery, priority: int) -> int:
    """Crisper's priority as the broker's level: Redis serves low numbers first."""
    level = broker_level(priority)
    return BROKER_LEVELS - level if is_redis(app.conf.broker_url or "") else level


def is_redis(broker_url: str) -> bool:
    """Whether a broker URL names Kombu's Redis transport (Redis or Valkey)."""
    return broker_url.split(":", 1)[0] in ("redis", "rediss", "valkey")
