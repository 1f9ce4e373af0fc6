"""A testing mode for your own tests: submitted jobs run in-process, synchronously, at once.

    with run_inline(crisper) as jobs:
        job = crisper.submit("send_invoice", {"order": 7})
        assert job.refresh().state is JobState.SUCCEEDED

It is the honest replacement for Celery's `task_always_eager`: no broker, but everything else
is what a worker does. The params are validated on submit, the job is claimed, run with a real
JobContext (progress, kept logs, check_cancelled), and its outcome, events, retries and logs
are written to the database by the worker's own code. A job submitted inside your transaction
runs only once it commits. Limits (docs/integrations.md): the job runs in the test's thread,
so nothing can cancel it from outside while it runs; no time limits (they are Celery's
signals); retries run at once (the testing clock jumps to their time) unless
`skip_backoff=False`; delayed jobs wait for `jobs.advance(...)`; flow-control limits still
need their database tables and, for rate limits, Redis.
"""

from __future__ import annotations

import os
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from crisper.durations import Duration, seconds
from crisper.engine.dispatch import Refusal
from crisper.states import JobState
from crisper.store import sweeps as sweep_sql
from crisper.store import utcnow

if TYPE_CHECKING:
    from crisper.app import Crisper

BATCH = 500


@dataclass(frozen=True)
class _Request:
    """What the runner reads of Celery's task request."""

    hostname: str = "testing"
    id: str = "inline"


class InlineWorker:
    """Runs each job as its wake-up would be published, in the calling thread."""

    def __init__(self, crisper: Crisper, *, skip_backoff: bool = True) -> None:
        self.crisper = crisper
        self.skip_backoff = skip_backoff
        self.ran: list[uuid.UUID] = []  # every attempt run, in order (a job once per attempt)
        self._waiting: deque[uuid.UUID] = deque()
        self._running = False
        self._offset = 0.0  # how far the testing clock is ahead of the real one, in seconds

    def now(self) -> timedelta:
        """How far the testing clock has been moved ahead (by advance() and skipped back-off)."""
        return timedelta(seconds=self._offset)

    def publish(self, dispatches: Sequence[sweep_sql.Dispatch]) -> list[Refusal]:
        """Stands in for the broker: run the jobs now (after the running one, if any).

        Nothing is refused here, as a broker that took every message would answer.
        """
        self._waiting.extend(d.id for d in dispatches)
        self.drain()
        return []

    def advance(self, by: Duration = 0) -> int:
        """Move the testing clock ahead and run what became due (delays, retries, started)."""
        self._offset += seconds(by)
        before = len(self.ran)
        self.drain()
        return len(self.ran) - before

    def drain(self) -> None:
        """Run waiting jobs until none is left. A job's own submits run after it, in order."""
        if self._running:
            return
        self._running = True
        try:
            while True:
                while self._waiting:
                    self._run(self._waiting.popleft())
                if not self._collect_due():
                    return
        finally:
            self._running = False

    def _run(self, job_id: uuid.UUID) -> None:
        record = self.crisper.jobs.get(job_id)
        if record.state is not JobState.QUEUED:
            return  # cancelled meanwhile, or a duplicate wake-up: the claim would drop it too
        job_type = self.crisper.registry.get(record.type)
        self.crisper.runner.run(job_type, [str(job_id)], _Request(id=f"inline-{os.getpid()}"))
        self.ran.append(job_id)
        after = self.crisper.jobs.get(job_id)
        if after.state is JobState.RETRYING and self.skip_backoff and after.run_at is not None:
            ahead = (after.run_at - utcnow()).total_seconds()
            self._offset = max(self._offset, ahead)

    def _collect_due(self) -> bool:
        """Queue jobs due on the testing clock, and queued jobs nobody sent (the relay's work)."""
        at = utcnow() + self.now()
        with self.crisper.store.transaction() as session:
            sweep_sql.promote_due(session, at, BATCH)
            todo = sweep_sql.undispatched(session, BATCH)
            sweep_sql.mark_dispatched(session, sweep_sql.ids_of(todo), at)
        self._waiting.extend(sweep_sql.ids_of(todo))
        return bool(todo)


@contextmanager
def run_inline(crisper: Crisper, *, skip_backoff: bool = True) -> Iterator[InlineWorker]:
    """Within the block, `crisper`'s jobs run in-process as they are sent; no broker is used."""
    worker = InlineWorker(crisper, skip_backoff=skip_backoff)
    crisper.dispatcher.stand_in = worker.publish  # this app only; every send goes through it
    try:
        worker.drain()  # jobs already waiting to be sent
        yield worker
    finally:
        crisper.dispatcher.stand_in = None
