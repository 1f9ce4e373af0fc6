"""Celery's worker consumer, made to survive a message it cannot take, on any broker.

Celery unpacks a task message in the worker's main process before any task code runs (the
body's `args, kwargs, embed`, its headers); a body of the wrong shape raises there and stops
the worker ("Unrecoverable error"). This consumer catches what the handling of one message
raises, logs one line (queue, size, why), rejects the message without requeueing it (dropped,
or dead-lettered where the queue has a dead-letter exchange) and goes on consuming. Broker
connection and channel errors still go to Celery, which reconnects.

Selected through Celery's `worker_consumer` setting, so it holds for every way of starting a
worker from the app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

log = logging.getLogger(__name__)


class Consumer(CeleryConsumer):  # type: ignore[misc]
    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        handle = super().create_task_handler(*args, **kwargs)
        passthrough = tuple(self.connection_errors) + tuple(self.channel_errors)

        def on_task_received(message: Any) -> Any:
            try:
                return handle(message)
            except passthrough:
                raise
            except Exception as exc:
                refuse(message, exc)
                return None

        return on_task_received


def refuse(message: Any, exc: Exception) -> None:
    """Log one line for a message the worker cannot take, and drop it."""
    queue = (getattr(message, "delivery_info", None) or {}).get("routing_key", "?")
    body = getattr(message, "body", b"") or b""
    task = (getattr(message, "headers", None) or {}).get("task")
    log.warning("refused a message on queue %r (%d bytes, task %r): %s: %s; dropped", queue,
                len(body), task, type(exc).__name__, exc)
    try:
        if not message.acknowledged:
            message.reject(requeue=False)
    except Exception as reject_error:  # the message is gone with its channel: nothing to do
        log.warning("could not reject the refused message: %s", reject_error)
