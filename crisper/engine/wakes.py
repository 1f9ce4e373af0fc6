"""At most one outstanding wake-up per queue and job type: a marker in the coordination Redis.

A submit publishes a wake-up only if it sets the marker (SET NX with a TTL); the worker that
takes the wake-up deletes the marker *before* its claims. Why no job is left asleep: a job is
committed before its submit checks the marker. If the check finds the marker set, a wake-up
is outstanding whose taker has not deleted the marker yet, so that taker's delete, and the
claims after it, come after the commit and see the job. If the check finds no marker, this
submit publishes. A worker that claimed a job wakes one more slot the same way, so a backlog
keeps every slot busy with one message outstanding, not one per job.

A lost wake-up (a broker restarted empty) is covered twice: the marker expires (TTL), and
the relay re-sends for queued jobs whose wake-up may be lost, setting the marker itself.
Without a coordination Redis, every publish goes out (no deduplication).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis

from crisper.errors import CrisperError

log = logging.getLogger(__name__)
MARKER_TTL_SECONDS = 30
KEY = "crisper.wake:{queue}:{type}"


class Wakes:
    """The markers of outstanding wake-ups (one Redis client per process, made on first use)."""

    def __init__(self, url: Callable[[], str | None] | None, prefix: str = "",
                 ttl: int = MARKER_TTL_SECONDS) -> None:
        self._url = url  # resolved on first use: building an app opens and reads nothing
        self._prefix = prefix
        self._ttl = ttl
        self._client: redis.Redis | None = None

    def claim(self, queue: str, type_name: str) -> bool:
        """Whether the caller should publish the wake-up (it set the marker, or no Redis)."""
        client = self._redis()
        if client is None:
            return True
        try:
            return bool(client.set(self._key(queue, type_name), b"1", nx=True, ex=self._ttl))
        except redis.RedisError as exc:  # publish anyway: a duplicate wake-up is harmless
            log.debug("wake-up marker unavailable (%s)", exc)
            return True

    def mark(self, queue: str, type_name: str) -> None:
        """A wake-up goes out regardless of the marker (the relay): set it, before publishing."""
        client = self._redis()
        if client is not None:
            try:
                client.set(self._key(queue, type_name), b"1", ex=self._ttl)
            except redis.RedisError as exc:
                log.debug("wake-up marker unavailable (%s)", exc)

    def taken(self, queue: str, type_name: str) -> None:
        """A worker took the wake-up: the next submit publishes again (call before claiming)."""
        client = self._redis()
        if client is not None:
            try:
                client.delete(self._key(queue, type_name))
            except redis.RedisError as exc:  # the marker expires on its own
                log.debug("wake-up marker unavailable (%s)", exc)

    def reset_after_fork(self) -> None:
        self._client = None

    def _key(self, queue: str, type_name: str) -> str:
        return self._prefix + KEY.format(queue=queue, type=type_name)

    def _redis(self) -> redis.Redis | None:
        if self._client is None and self._url is not None:
            try:
                url = self._url()
            except CrisperError as exc:  # no readable coordination Redis: no deduplication
                log.debug("no wake-up markers (%s)", exc)
                return None
            if url is None:
                return None
            url = "redis" + url[len("valkey"):] if url.startswith("valkey") else url
            self._client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        return self._client
