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

It also carries the wake-up markers in band (engine/wakes.py): a message naming its marker is
pushed by a script that first sets the marker, and pushes nothing if it was set; taking such a
message deletes its marker in the pipeline that records the message as unacknowledged.
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

import redis as redis_py
from kombu.transport import redis
from kombu.utils.json import dumps

from crisper.engine.wakes import KEY_PREFIX, MARKER_HEADER, MARKER_TTL_SECONDS

log = logging.getLogger(__name__)
# KEYS: the marker, the queue's list; ARGV: the marker's TTL, the message, "1" to publish
# regardless of the marker (setting it all the same). It answers nothing: kombu's put has no
# way to pass an answer up, and a message not pushed needs nothing more from its sender.
PUSH_UNLESS_MARKED = """
if ARGV[3] == '1' then
  redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
elseif not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return
end
redis.call('LPUSH', KEYS[2], ARGV[2])
"""


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


def marker_of(headers: Any) -> dict[str, Any] | None:
    """The in-band marker a message's headers name, if any: only a key of the markers' own
    namespace, so that a message made by hand cannot have a worker delete any other key."""
    marker = headers.get(MARKER_HEADER) if isinstance(headers, dict) else None
    key = marker.get("key") if isinstance(marker, dict) else None
    return marker if isinstance(key, str) and key.startswith(KEY_PREFIX) else None


def deleted_on_receipt(headers: Any) -> str | None:
    """The key of the marker that the worker's main process deletes as it takes a message
    with these headers (QoS below): an in-band marker, unless a herald's, which its slot
    deletes (engine/wakes.py: "Heralds")."""
    marker = marker_of(headers)
    return marker["key"] if marker and not marker.get("by_slot") else None


class QoS(redis.QoS):
    """Kombu's acknowledgement emulation, which also deletes a taken wake-up's marker.

    Kombu records a message it hands on as unacknowledged in one pipeline; the delete joins
    that pipeline, so it costs no round trip and precedes every claim the message leads to.
    """

    _marker: str | None = None

    def append(self, message: Any, delivery_tag: Any) -> None:
        self._marker = deleted_on_receipt(message.headers)
        try:
            super().append(message, delivery_tag)
        finally:
            self._marker = None

    @contextmanager
    def pipe_or_acquire(self, pipe: Any = None, client: Any = None) -> Iterator[Any]:
        with super().pipe_or_acquire(pipe, client) as pipeline:
            if self._marker is not None:  # the pipeline adds the broker's key prefix
                pipeline.delete(self._marker)
                self._marker = None
            yield pipeline


class Channel(redis.Channel):
    QoS = QoS
    _commands_client: Any = None
    _script: Any = None

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

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        """Push a message; one naming its marker, only if it sets that marker (in one script)."""
        marker = marker_of(message.get("headers"))
        if marker is None or kwargs.get("_publish_batch") is not None or queue in self._expires:
            super()._put(queue, message, **kwargs)
            return
        if self._script is None or self._script.registered_client.connection_pool is not self.pool:
            # A plain client on the channel's pool: the script's keys get the prefix here.
            plain = redis_py.Redis(connection_pool=self.pool)
            self._script = plain.register_script(PUSH_UNLESS_MARKED)
        prefix = self.global_keyprefix
        pri = self._get_message_priority(message, reverse=False)
        self._script(keys=[prefix + marker["key"], prefix + self._q_for_pri(queue, pri)],
                     args=[int(marker.get("ttl", MARKER_TTL_SECONDS)), dumps(message),
                           "1" if marker.get("force") else "0"])

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
