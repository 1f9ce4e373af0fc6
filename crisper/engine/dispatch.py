"""Send wake-up messages ("run job X") for jobs the store already holds."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence

from amqp.exceptions import NotFound as AmqpNotFound
from celery import Celery
from kombu.exceptions import ChannelError
from kombu.exceptions import OperationalError as KombuOperationalError

from crisper.engine.celery_app import broker_priority
from crisper.errors import BrokerUnavailable
from crisper.store.jobs import Dispatch


def publish(app: Celery, dispatches: Sequence[Dispatch],
            batch_of: Callable[[str], int] = lambda _type: 1) -> None:
    """Publish the wake-up messages on one producer; BrokerUnavailable if the broker is down.

    Jobs of one type, queue and priority share a message, up to `batch_of(type)` per message.
    """
    if not dispatches:
        return
    try:
        with app.producer_or_acquire() as producer:
            for (type_, queue, priority), ids in batches(dispatches, batch_of):
                app.send_task(
                    type_, args=[ids], queue=queue, producer=producer, retry=False,
                    priority=broker_priority(app, priority), ignore_result=True,
                )
    except (KombuOperationalError, ConnectionError, OSError) as exc:
        raise BrokerUnavailable(f"the broker is unavailable: {exc}") from exc


def batches(dispatches: Sequence[Dispatch], batch_of: Callable[[str], int]
            ) -> Iterator[tuple[tuple[str, str, int], list[str]]]:
    """Group job ids by (type, queue, priority), in order, in chunks of the type's batch size."""
    groups: dict[tuple[str, str, int], list[str]] = defaultdict(list)
    for d in dispatches:
        groups[(d.type, d.queue, d.priority)].append(str(d.id))
    for key, ids in groups.items():
        size = max(1, batch_of(key[0]))
        for start in range(0, len(ids), size):
            yield key, ids[start:start + size]


def queue_depth(app: Celery, queue: str) -> int | None:
    """Messages waiting in `queue` on the broker, or None if the broker cannot say."""
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)
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
