"""Live updates over Redis pub/sub: progress, log lines and state changes as they happen.

The database stays the truth; this channel only makes watching cheap and immediate.
Everything here is best effort: a publish that fails is dropped, never retried.

Most jobs are never watched, and a publish per state change was one more Redis round trip
per job. So a watcher announces the job it follows (`Watch`), and a publisher sends only
news of announced jobs, reading the announcements at most every NOTICED_WITHIN seconds. A
watcher reads the store again after that delay, so news from before publishers noticed it
is not lost: the store holds every state change and log line.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

import redis

from crisper.errors import CrisperError

log = logging.getLogger(__name__)
QUIET_AFTER_FAILURE = 5.0  # seconds without live publishing after Redis failed once
WATCHED = "crisper:watched"  # sorted set: "<job id> <watch token>" -> lapses at (epoch s)
WATCH_SECONDS = 30.0  # an announcement lapses unless renewed (its watcher may have died)
NOTICED_WITHIN = 0.5  # publishers read the announcements this often


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
        self._watched: frozenset[str] = frozenset()
        self._watched_read_at = float("-inf")

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
            if str(job_id) in self._watched_jobs(client):
                client.publish(channel(job_id), json.dumps({"kind": kind, **data}, default=str))
        except redis.RedisError as exc:
            # Redis is away: stay quiet for a while instead of slowing every job down.
            self._quiet_until = time.monotonic() + QUIET_AFTER_FAILURE
            log.debug("live publish failed: %s", exc)

    def _watched_jobs(self, client: redis.Redis) -> frozenset[str]:
        """The ids of the jobs watchers announced, read again once NOTICED_WITHIN has passed."""
        now = time.monotonic()
        if now - self._watched_read_at >= NOTICED_WITHIN:
            members: list[bytes] = cast(list[bytes],
                                        client.zrangebyscore(WATCHED, time.time(), "+inf"))
            self._watched = frozenset(m.decode().partition(" ")[0] for m in members)
            self._watched_read_at = now
        return self._watched

    def reset(self) -> None:
        """Forget the connection (after fork)."""
        self._client = None
        self._watched_read_at = float("-inf")


class Watch:
    """One watcher's announcement that it follows a job: publishers then send its news.

    Each watcher has its own entry, so that one leaving does not silence another; an entry
    lapses after WATCH_SECONDS unless renewed, so a watcher that died is forgotten.
    """

    def __init__(self, client: redis.Redis, job_id: uuid.UUID) -> None:
        self._client = client
        self._member = f"{job_id} {uuid.uuid4().hex}"
        self._renewed_at = float("-inf")

    def renew(self) -> None:
        """Announce (again), at most once a third of WATCH_SECONDS; lapsed entries go."""
        if time.monotonic() - self._renewed_at < WATCH_SECONDS / 3:
            return
        now = time.time()
        with self._client.pipeline(transaction=False) as pipe:
            pipe.zadd(WATCHED, {self._member: now + WATCH_SECONDS})
            pipe.zremrangebyscore(WATCHED, "-inf", now)
            pipe.execute()
        self._renewed_at = time.monotonic()

    def end(self) -> None:
        self._client.zrem(WATCHED, self._member)
