"""Live updates over Redis pub/sub: progress, log lines and state changes as they happen.

The database stays the truth; this channel only makes watching cheap and immediate.
Everything here is best effort: a publish that fails is dropped, never retried.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from crisper.errors import CrisperError

log = logging.getLogger(__name__)
QUIET_AFTER_FAILURE = 5.0  # seconds without live publishing after Redis failed once


def channel(job_id: uuid.UUID | str) -> str:
    return f"crisper:job:{job_id}"


class LivePublisher:
    """Publishes job updates; a no-op when no coordination Redis is configured.

    `url` may be a function, asked on first publish: finding the URL can fail (an unreadable
    embedded broker state file), and that must not fail a submit whose job is committed.
    """

    def __init__(self, url: str | None | Callable[[], str | None]) -> None:
        self._url = url
        self._client: redis.Redis | None = None
        self._quiet_until = 0.0

    @property
    def url(self) -> str | None:
        if callable(self._url):
            self._url = self._url()
        return self._url

    def _redis(self) -> redis.Redis | None:
        if self._client is None:
            try:
                url = self.url
            except CrisperError as exc:  # asked again after the quiet period
                self._quiet_until = time.monotonic() + QUIET_AFTER_FAILURE
                log.warning("live updates off for now: %s", exc)
                return None
            if url:
                self._client = redis.Redis.from_url(
                    url, socket_connect_timeout=1, socket_timeout=1
                )
        return self._client

    def publish(self, job_id: uuid.UUID, kind: str, data: dict[str, Any]) -> None:
        if time.monotonic() < self._quiet_until:
            return
        client = self._redis()
        if client is None:
            return
        try:
            client.publish(channel(job_id), json.dumps({"kind": kind, **data}, default=str))
        except redis.RedisError as exc:
            # Redis is away: stay quiet for a while instead of slowing every job down.
            self._quiet_until = time.monotonic() + QUIET_AFTER_FAILURE
            log.debug("live publish failed: %s", exc)

    def reset(self) -> None:
        """Forget the connection (after fork)."""
        self._client = None
