"""Send wake-up messages ("run job X") for jobs the store already holds."""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import redis
from amqp.exceptions import ChannelError as AmqpChannelError
from amqp.exceptions import NotFound as AmqpNotFound
from celery import Celery
from kombu.exceptions import ChannelError
from kombu.exceptions import OperationalError as KombuOperationalError

from crisper.engine.celery_app import broker_priority, is_redis
from crisper.errors import BrokerUnavailable
from crisper.store import utcnow
from crisper.store.sweeps import Dispatch

if TYPE_CHECKING:
    from crisper.engine.wakes import Wake, Wakes

log = logging.getLogger(__name__)

# Redis answers that concern the whole server, not one key: the broker is unusable for now.
_SERVER_WIDE = re.compile(r"\b(MISCONF|READONLY|OOM|LOADING|NOAUTH|NOPERM|WRONGPASS|MASTERDOWN)\b")
_SERVER_WIDE_TYPES = (redis.exceptions.ReadOnlyError, redis.exceptions.OutOfMemoryError,
                      redis.exceptions.AuthenticationError, redis.exceptions.NoPermissionError)
EPOCH_KEY = "crisper.broker-epoch"
# Marks Crisper's own wake-up messages, so that a worker tells them from a Celery caller's
# message for the same task name (crisper/adoption/consumer.py adopts those).
WAKE_HEADERS = {"crisper": "wake"}


@dataclass(frozen=True)
class Refusal:
    """Jobs whose wake-up message the broker refused (not a broker outage): they wait, with why."""

    ids: list[uuid.UUID]
    error: str


def publish(app: Celery, dispatches: Sequence[Dispatch], wakes: Wakes,
            force: bool = False, herald: bool = False) -> list[Refusal]:
    """Publish one wake-up per (job type, queue) of `dispatches`; answer the groups refused.

    A wake-up names no job: the worker that takes it claims the queue's best jobs from the
    database. It goes out only if none is outstanding for its queue and type (`wakes`, see
    engine/wakes.py), unless `force` (the relay: the outstanding one may be lost); a
    `herald` goes out before its jobs are committed (engine/wakes.py: "Heralds"). A message
    the broker cannot take (a queue name that collides with one of its own keys) refuses
    only its group. BrokerUnavailable if the broker is down: then nothing more is tried,
    after one fresh connection attempt (no retry loop; see `on_producer`).
    """
    groups = wake_groups(dispatches)
    plan = wakes.plan(app, groups, force, herald)
    if not plan:
        return []
    refused: list[Refusal] = []
    todo, sent = dict(plan), set[tuple[str, str]]()
    try:
        on_producer(app, lambda producer: _send_each(app, producer, groups, todo, sent, refused))
    except Exception as exc:
        if broker_wide(exc):
            raise BrokerUnavailable(f"the broker is unavailable: {exc}") from exc
        raise
    finally:
        for (type_name, queue), wake in plan.items():  # markers set for wake-ups not sent
            if wake.owned and (type_name, queue) not in sent:
                wakes.taken(queue, type_name)
    return refused


def on_producer(app: Celery, send: Callable[[Any], None]) -> None:
    """`send(producer)` on one of `app`'s pooled producers, its connection made if need be.

    A pooled connection can die unseen: the broker restarted, a middlebox dropped it idle,
    a forked child's cleanup shut its socket (kombu's pools do). That says nothing of the
    broker, so a reused connection that fails is replaced once and `send` runs again (it
    must skip what it did); a fresh connection's failure is the broker's, and raised.
    """
    with app.producer_or_acquire() as producer:
        for last_try in (False, True):
            reused = producer.connection.connected
            try:
                producer.connection.ensure_connection(max_retries=0)
                send(producer)
                return
            except Exception as exc:
                if last_try or not reused or not broker_wide(exc):
                    raise
                log.info("a pooled broker connection was dead (%s); connecting anew", exc)
                producer.connection.collect()
                producer.revive(producer.connection)


def _send_each(app: Celery, producer: Any,
               groups: dict[tuple[str, str], tuple[int, list[uuid.UUID]]],
               todo: dict[tuple[str, str], Wake], sent: set[tuple[str, str]],
               refused: list[Refusal]) -> None:
    """Send the wake-ups still `todo`, taking each out as it is sent or refused; a broker
    error stops the loop (BrokerUnavailable's cause) and leaves the rest `todo`."""
    for key, wake in list(todo.items()):
        type_name, queue = key
        priority, ids = groups[key]
        try:
            send_wake(app, producer, type_name, queue, priority, wake.headers)
        except Exception as exc:  # noqa: BLE001 - sorted just below
            if broker_wide(exc):
                raise
            refused.append(Refusal(ids, f"{type(exc).__name__}: {exc}"))
        else:
            sent.add(key)
        del todo[key]


def send_wake(app: Celery, producer: Any, type_name: str, queue: str, priority: int,
              headers: dict[str, Any] | None = None) -> None:
    """One wake-up message: the job type's task, on the queue, naming no job; `headers`: its
    in-band marker (engine/wakes.py), which the transport checks as it pushes."""
    app.send_task(type_name, args=[[]], queue=queue, producer=producer, retry=False,
                  priority=broker_priority(app, priority), ignore_result=True,
                  headers={**WAKE_HEADERS, **headers} if headers else WAKE_HEADERS)


def broker_wide(exc: BaseException) -> bool:
    """Whether an error means the broker is down or unusable, rather than one message refused.

    Kombu wraps every Redis error in its OperationalError, so the causes decide: a connection
    error, a timeout or a server-wide Redis answer (MISCONF, READONLY, OOM…) is the broker's;
    a key-level answer (WRONGTYPE) or an AMQP channel error (403, 404, 406) is the message's.
    """
    chain = list(_causes(exc))
    for e in chain:
        if isinstance(e, _SERVER_WIDE_TYPES):
            return True
        if isinstance(e, redis.exceptions.ResponseError):
            return bool(_SERVER_WIDE.search(str(e)))
        if isinstance(e, AmqpChannelError | ChannelError):
            return False
    return isinstance(chain[-1], OSError | redis.exceptions.ConnectionError
                      | redis.exceptions.TimeoutError | KombuOperationalError | TimeoutError)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def wake_groups(dispatches: Sequence[Dispatch]
                ) -> dict[tuple[str, str], tuple[int, list[uuid.UUID]]]:
    """{(type, queue): (the highest priority among its jobs, their ids)}, in first-seen order."""
    groups: dict[tuple[str, str], tuple[int, list[uuid.UUID]]] = {}
    for d in dispatches:
        priority, ids = groups.get((d.type, d.queue), (d.priority, []))
        ids.append(d.id)
        groups[(d.type, d.queue)] = (max(priority, d.priority), ids)
    return groups


class Breaker:
    """A circuit breaker for submitters: after a failed publish, skip the broker for a while.

    With the broker down, a submit commits its job and returns at once (the relay sends it
    later) instead of waiting for a connection per submit. One warning when it opens, one
    note when a publish succeeds again; none per submit.
    """

    def __init__(self, cooldown: float = 5.0, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.cooldown = cooldown
        self._clock = clock
        self._open_until = float("-inf")
        self._down = False
        self._lock = threading.Lock()

    def allows(self) -> bool:
        """Whether to try the broker now (always while closed; once per cooldown while open)."""
        with self._lock:
            if self._clock() < self._open_until:
                return False
            if self._down:  # half-open: this caller tries; the others wait for its answer
                self._open_until = self._clock() + self.cooldown
            return True

    def trip(self, exc: BaseException) -> None:
        with self._lock:
            self._open_until = self._clock() + self.cooldown
            first = not self._down
            self._down = True
        if first:
            log.warning("cannot publish to the broker (%s: %s); jobs submitted meanwhile are "
                        "stored and the relay sends them when it can", type(exc).__name__, exc)

    def reset(self) -> None:
        with self._lock:
            was_down, self._down = self._down, False
            self._open_until = float("-inf")
        if was_down:
            log.info("broker reachable again; submits publish directly")


class BrokerEpoch:
    """When the broker's memory began: a key it loses whenever it loses its messages.

    A Redis broker restarted without persistence (or flushed) forgets the key along with every
    message; the relay then re-sends each queued job dispatched before the key was set again,
    at once, without waiting for the queue to drain. RabbitMQ keeps durable queues: None.
    """

    def __init__(self, app: Celery) -> None:
        url = app.conf.broker_url or ""
        self._url = "redis" + url[len("valkey"):] if url.startswith("valkey") else url
        prefix = (app.conf.broker_transport_options or {}).get("global_keyprefix", "")
        self._key = f"{prefix}{EPOCH_KEY}"
        self._client: redis.Redis | None = None

    def began_at(self) -> datetime | None:
        """The epoch's start (set to now if the broker has none yet); None if not Redis."""
        if not is_redis(self._url):
            return None
        if self._client is None:
            self._client = redis.Redis.from_url(self._url, socket_connect_timeout=2,
                                                socket_timeout=5)
        try:
            self._client.set(self._key, utcnow().isoformat(), nx=True)
            value = self._client.get(self._key)
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"the broker is unavailable: {exc}") from exc
        if value is None:  # deleted between the two commands: the next tick sets it again
            return None
        return datetime.fromisoformat(value.decode() if isinstance(value, bytes) else str(value))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def queue_depth(app: Celery, queue: str) -> int | None:
    """Messages waiting in `queue` on the broker, or None if the broker cannot say."""
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=0)
            # Redis queues are virtual: declaring one only reads its length. (A passive declare
            # there checks key existence without the global key prefix, and misses the queue.)
            passive = conn.transport.driver_type == "amqp"
            try:
                ok = conn.default_channel.queue_declare(queue=queue, passive=passive)
            except (ChannelError, AmqpNotFound):
                return 0  # the broker has no such queue (Redis drops empty ones): nothing waits
            return int(ok.message_count)
    except (KombuOperationalError, ConnectionError, OSError):
        return None
