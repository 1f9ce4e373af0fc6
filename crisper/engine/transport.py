"""Kombu's Redis transport, made to survive any bytes on a queue.

Kombu decodes a Redis queue item in two places before Celery sees it: the item's JSON (in the
channel's read) and the envelope (properties, base64 body, in the message's constructor).
Either raising inside the worker's event loop stops the worker. Here every item is checked
before it is handed on: one that is not a kombu envelope is logged (queue, size, why) and
dropped; it was already popped from the queue and was never acknowledged work. Messages that
are envelopes but carry a refused content type (pickle) or an unknown task name are Celery's
to refuse, which it does without stopping.

Selected through Celery's `broker_transport` setting, so it holds for every way of starting a
worker from the app (`crisper worker`, `celery -A proj worker`).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from queue import Empty
from typing import Any

from kombu.transport import redis

log = logging.getLogger(__name__)


class Refused(ValueError):
    """A queue item that is not a message Crisper's workers can take."""


def check_envelope(payload: Any) -> None:
    """Raise Refused, with the reason, unless `payload` is a kombu envelope that decodes."""
    if not isinstance(payload, dict):
        raise Refused(f"a JSON {type(payload).__name__}, not a message envelope")
    properties = payload.get("properties")
    if not isinstance(properties, dict) or "delivery_tag" not in properties:
        raise Refused("the envelope has no properties with a delivery tag")
    if not isinstance(properties.get("delivery_info", {}), dict):
        raise Refused("the envelope's delivery_info is not an object")
    body = payload.get("body")
    if body and properties.get("body_encoding") == "base64":
        if not isinstance(body, str):
            raise Refused("the base64 body is not a string")
        try:
            base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise Refused(f"the body is not valid base64 ({exc})") from exc


def _refuse(queue: str, size: int, why: str) -> None:
    log.warning("refused a message on queue %r (%d bytes): %s; dropped", queue, size, why)


class Channel(redis.Channel):
    _commands_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        """One client per channel (and pool) for its commands, publishes included.

        Kombu builds a new redis-py client for each command it runs outside the event loop,
        and building one (its table of reply callbacks) took a quarter of a publish's CPU
        (0.32 -> 0.24 ms per wake-up published with redis-py 8 and Kombu 5.7).
        A client holds no connection of its own (it takes one from the channel's pool per
        command), so sharing it changes nothing else; a new pool gets a new client.
        """
        if client:
            yield client
            return
        shared = self._commands_client
        if shared is None or shared.connection_pool is not self.pool:
            shared = self._commands_client = self._create_client()
        yield shared

    def _brpop_read(self, **options: Any) -> bool:
        try:
            return bool(super()._brpop_read(**options))
        except json.JSONDecodeError as exc:  # the item left the queue: nothing to give back
            _refuse(self._queues_named(), len(exc.doc), f"not JSON ({exc.msg})")
            return True
        except UnicodeDecodeError as exc:
            _refuse(self._queues_named(), len(exc.object), "not UTF-8 text")
            return True

    def _queues_named(self) -> str:
        """Kombu pops from all of them at once and does not say which item came from where."""
        return "one of " + ",".join(self._active_queues)

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        try:
            payload = super()._get(queue)  # Redis takes no timeout here
        except json.JSONDecodeError as exc:
            _refuse(queue, len(exc.doc), f"not JSON ({exc.msg})")
            raise Empty() from exc
        except UnicodeDecodeError as exc:
            _refuse(queue, len(exc.object), "not UTF-8 text")
            raise Empty() from exc
        try:
            check_envelope(payload)
        except Refused as exc:
            _refuse(queue, len(json.dumps(payload)), str(exc))
            raise Empty() from exc
        return payload


class Transport(redis.Transport):
    """The Redis transport whose channels and delivery refuse what is not a message."""

    Channel = Channel

    def _deliver(self, message: Any, queue: str) -> None:
        try:
            check_envelope(message)
        except Refused as exc:
            _refuse(queue, len(json.dumps(message)), str(exc))
            return
        super()._deliver(message, queue)
