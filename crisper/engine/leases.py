"""Keeps the leases of the jobs running in this process alive, and carries their news.

One daemon thread per process, one transaction per beat for every job the process runs:
renew the leases, store new progress and log lines, and learn of cancel requests. If the
process is frozen or killed the beats stop and the leases run out: that is how the lifeline
learns a worker is gone.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from crisper.engine.context import JobContext
from crisper.errors import StoreUnavailable
from crisper.store import Store, utcnow
from crisper.store import attempts as attempt_sql

log = logging.getLogger(__name__)


def beat_interval(lease_seconds: float, heartbeat_seconds: float) -> float:
    """The lease keeper's beat: the heartbeat, and at least three beats per lease."""
    return min(heartbeat_seconds, lease_seconds / 3)


def interrupted_lease(lease_seconds: float, heartbeat_seconds: float) -> float:
    """The lease of a job interrupted by an announced shutdown: three beats, so that a killed
    worker's job is rescued within seconds while a draining one keeps it."""
    return min(lease_seconds, 3 * beat_interval(lease_seconds, heartbeat_seconds))


class LeaseKeeper:
    def __init__(self, store: Store, lease_seconds: float, interval: float) -> None:
        self.store = store
        self.lease_seconds = lease_seconds
        self.interval = interval
        self._held: dict[uuid.UUID, JobContext] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def hold(self, ctx: JobContext) -> None:
        with self._lock:
            self._held[ctx.job_id] = ctx
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="crisper-leases",
                                                daemon=True)
                self._thread.start()

    def release(self, ctx: JobContext) -> None:
        with self._lock:
            self._held.pop(ctx.job_id, None)

    def forget_after_fork(self) -> None:
        self._held = {}
        self._lock = threading.Lock()
        self._thread = None

    def _loop(self) -> None:
        while True:
            time.sleep(self.interval)
            with self._lock:
                held = list(self._held.values())
            if not held:
                continue
            try:
                self.beat(held)
            except StoreUnavailable as exc:
                log.warning("could not renew %d lease(s): %s", len(held), exc)
            except Exception:
                log.exception("lease renewal failed")
            now = time.monotonic()
            for ctx in held:
                if now > ctx.lease_deadline:
                    ctx.lease_lost = True

    def beat(self, held: list[JobContext]) -> None:
        asked_at = time.monotonic()
        now = utcnow()
        until = now + timedelta(seconds=self.lease_seconds)
        short = now + timedelta(seconds=min(self.lease_seconds, 3 * self.interval))
        with self.store.transaction() as session:
            answer = attempt_sql.renew_leases(session, {c.job_id: c.lease_token for c in held},
                                              until, interrupted_until=short)
            for ctx in held:
                if ctx.job_id in answer:
                    store_news(session, ctx)
        for ctx in held:
            if ctx.job_id not in answer:
                ctx.lease_lost = ctx.lease_revoked = True
            else:
                ctx.lease_renewed(asked_at)
                ctx.announce_running()
                ctx.cancel_requested = ctx.cancel_requested or answer[ctx.job_id]


def store_news(session: Session, ctx: JobContext, final: bool = False) -> None:
    """Write a job's new progress and log lines (and, at the end, how many were dropped)."""
    progress = ctx.take_progress()
    if progress is not None:
        attempt_sql.save_progress(session, ctx.job_id, ctx.lease_token, *progress)
    lines: list[dict[str, Any]] = ctx.logs.take()
    if final and ctx.logs.dropped:
        lines.append({"job_id": ctx.job_id, "at": utcnow(), "attempt": ctx.attempt,
                      "level": "WARNING",
                      "message": f"{ctx.logs.dropped} more log lines were not kept"})
        ctx.logs.dropped = 0
    attempt_sql.append_logs(session, lines)
