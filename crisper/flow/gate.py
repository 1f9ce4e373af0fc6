"""Admission before a claim: paused queues, concurrency slots and rate tokens.

A job that may not start now is deferred (queued -> scheduled with a run_at) without
spending an attempt; the timers bring it back. Concurrency slots are not stored anywhere:
they are the running rows with the same key, so a dead worker's slot frees itself when
the lifeline ends its expired lease.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import redis

from crisper.errors import CrisperError
from crisper.flow import limits
from crisper.flow.bucket import RateBuckets
from crisper.store import attempts as attempt_sql
from crisper.store import flow as flow_sql
from crisper.store import jobs as job_sql
from crisper.store import sweeps as sweep_sql
from crisper.store import utcnow

if TYPE_CHECKING:
    import uuid

    from sqlalchemy.orm import Session

    from crisper.flow.limits import FlowOptions
    from crisper.settings import Settings
    from crisper.store import Store

log = logging.getLogger(__name__)
# A job waiting for a concurrency slot is woken when one frees; this is only the fallback.
CONCURRENCY_POLL_SECONDS = 10.0
REDIS_DOWN_RETRY_SECONDS = 5.0


class FlowGate:
    """Decides, in the claim's own transaction, which of a message's jobs may start now."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.buckets = RateBuckets(settings.resolved_redis_url(), settings.broker_prefix)

    def claim(self, type_name: str, opts: FlowOptions, ids: list[uuid.UUID], worker: str,
              task_id: str, forcible: bool | None = None) -> list[attempt_sql.Claimed]:
        """Claim the admitted jobs of type `type_name` (flow options `opts`); defer the
        others; leave paused queues' jobs untouched."""
        with self.store.transaction() as session:
            return self.claim_in(session, type_name, opts, ids, worker, task_id, forcible)

    def claim_in(self, session: Session, type_name: str, opts: FlowOptions,
                 ids: list[uuid.UUID], worker: str, task_id: str, forcible: bool | None = None
                 ) -> list[attempt_sql.Claimed]:
        """`claim`, in the caller's transaction (which may hold the jobs' rows locked)."""
        at = utcnow()
        admitted = self._admit(session, type_name, opts, ids, at)
        claimed = attempt_sql.claim(session, admitted, worker, task_id,
                                    self.settings.lease_seconds, at, job_type=type_name,
                                    forcible=forcible)
        if claimed and opts.limited:
            flow_sql.admitted(session, [c.id for c in claimed])
        return claimed

    def _admit(self, session: Session, type_name: str, opts: FlowOptions, ids: list[uuid.UUID],
               at: datetime) -> list[uuid.UUID]:
        rows = flow_sql.pending(session, ids)
        held = [r.id for r in rows if r.paused]
        if held:  # the relay sends them again once the queue is resumed
            sweep_sql.mark_dispatched(session, held, None)
        rows = [r for r in rows if not r.paused]
        if not opts.limited:
            return [r.id for r in rows]
        admitted = []
        taken: dict[str, int] = {}
        for name in sorted({r.concurrency_key for r in rows if r.concurrency_key}):
            flow_sql.lock_key(session, name)
            taken[name] = flow_sql.running(session, name)
        for row in rows:
            key = row.concurrency_key
            if opts.concurrency is not None and key is not None and taken[key] >= opts.concurrency:
                until = at + timedelta(seconds=CONCURRENCY_POLL_SECONDS)
                flow_sql.defer(session, row, until, "concurrency", at)
                continue
            if opts.rate_limit is not None and row.rate_token_at is None:
                wait = self._reserve(type_name, opts, row.id, session)
                if wait is None:  # Redis is unreachable: no slot was taken; ask again later
                    until = at + timedelta(seconds=REDIS_DOWN_RETRY_SECONDS)
                    flow_sql.defer(session, row, until, "rate", at)
                    continue
                if wait > 0:  # the slot is ours, later: wait for it holding it
                    until = at + timedelta(seconds=wait)
                    flow_sql.defer(session, row, until, "rate", at, rate_token_at=until)
                    continue
            if key is not None:
                taken[key] = taken.get(key, 0) + 1
            admitted.append(row.id)
        return admitted

    def _reserve(self, type_name: str, opts: FlowOptions, job_id: uuid.UUID, session: Session
                 ) -> float | None:
        """Seconds until this job's rate slot; on a Redis outage, retry later with no slot."""
        assert opts.rate_limit is not None
        record = job_sql.get(session, job_id)
        params: dict[str, Any] = record.params if record else {}
        key = limits.rate_key(opts, type_name, params)
        try:
            return self.buckets.reserve(key, opts.rate_limit)
        except redis.RedisError as exc:
            log.warning("rate limit for %s unavailable (%s); job %s waits", key, exc, job_id)
            return None

    def release(self, type_name: str, opts: FlowOptions, params: dict[str, Any]) -> None:
        """An attempt of type `type_name` ended: wake jobs waiting for the slot it held."""
        key = limits.concurrency_key(opts, type_name, params)
        if key is None or opts.concurrency is None:
            return
        try:
            with self.store.transaction() as session:
                flow_sql.lock_key(session, key)
                free = opts.concurrency - flow_sql.running(session, key)
                flow_sql.wake(session, key, free, utcnow())
        except CrisperError as exc:  # the waiters' own poll brings them back
            log.warning("could not wake jobs waiting on %s: %s", key, exc)
