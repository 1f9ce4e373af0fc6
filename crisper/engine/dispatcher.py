"""The broker as Crisper's parts use it: wake-ups, queue depths, revokes and its epoch.

One object handed to the parts that talk to the broker (the job service, the relay, the
canceller, the runner), so that none of them needs the app. The Celery app is built on first
use: building a Crisper app opens no connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from crisper.engine.dispatch import (
    BrokerEpoch,
    Refusal,
    on_producer,
    publish,
    queue_depth,
    send_wake,
)
from crisper.engine.wakes import Wakes
from crisper.store import sweeps as sweep_sql
from crisper.store.sweeps import Dispatch

if TYPE_CHECKING:
    from celery import Celery
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
MAX_BACKOFF_SECONDS = 60.0
Publish = Callable[[Sequence[Dispatch]], list[Refusal]]


class Dispatcher:
    """Sends wake-ups for the queues of jobs the store holds (engine/wakes.py: deduplicated).

    `stand_in`, when set, receives every send instead of the broker (testing's
    run_inline runs the jobs in-process).
    """

    def __init__(self, celery: Callable[[], Celery], wakes: Wakes | None = None) -> None:
        self._celery = celery
        self.wakes = wakes if wakes is not None else Wakes(None)
        self.stand_in: Publish | None = None

    @property
    def celery(self) -> Celery:
        return self._celery()

    @property
    def inline(self) -> bool:
        """Whether a send runs its jobs in the caller's thread (testing): never deferred."""
        return self.stand_in is not None

    def publish(self, dispatches: Sequence[Dispatch], force: bool = False) -> list[Refusal]:
        """Wake the queues of `dispatches`, one wake-up per queue and type unless one is
        outstanding (`force`: regardless, for the relay). Answer the groups the broker
        refused (BrokerUnavailable if it is down)."""
        if self.stand_in is not None:
            return self.stand_in(dispatches)
        return publish(self.celery, dispatches, self.wakes, force)

    def herald(self, dispatches: Sequence[Dispatch]) -> None:
        """Wake-ups for jobs whose insert is committing now, for the quiet queues among them
        (engine/wakes.py: "Heralds"). Never raises: the wake-up after the commit follows."""
        if self.stand_in is not None:
            return
        try:
            app = self.celery  # no broker configured or readable: that wake-up says so
            quiet = [d for d in dispatches if self.wakes.quiet(app, d.queue, d.type)]
            if quiet:
                publish(app, quiet, self.wakes, herald=True)  # a refusal: the committed's
        except Exception as exc:  # noqa: BLE001 - the wake-up after the commit decides
            log.debug("herald not sent (%s)", exc)

    def wake(self, queue: str, type_name: str) -> None:
        """One more wake-up for a queue, unless one is outstanding (a worker with a backlog)."""
        if self.stand_in is not None:
            return
        wake = self.wakes.plan(self.celery, [(type_name, queue)]).get((type_name, queue))
        if wake is not None:
            app = self.celery
            on_producer(app, lambda producer: send_wake(app, producer, type_name, queue, 0,
                                                        wake.headers))

    def queue_depth(self, queue: str) -> int | None:
        return queue_depth(self.celery, queue)

    def epoch(self) -> BrokerEpoch:
        return BrokerEpoch(self.celery)

    def revoke(self, task_id: str | None, signal: str) -> None:
        """Stop the process running a task (Celery's revoke with terminate)."""
        self.celery.control.revoke(task_id, terminate=True, signal=signal)


def dispatch_backoff(attempts: int, tick: float) -> float:
    """Seconds before a refused message is tried again: doubling from one tick, capped."""
    return min(MAX_BACKOFF_SECONDS, tick * 2.0 ** max(0, attempts - 1))


def record_refusals(session: Session, todo: Sequence[Dispatch], refusals: list[Refusal],
                    at: datetime, tick: float) -> None:
    """Each refused job waits, with the broker's answer, for a back-off that grows per refusal."""
    attempts = {d.id: d.dispatch_attempts for d in todo}
    for r in refusals:
        tries = 1 + max(attempts.get(i, 0) for i in r.ids)
        retry_at = at + timedelta(seconds=dispatch_backoff(tries, tick))
        sweep_sql.mark_dispatch_refused(session, r.ids, r.error, retry_at)
        log.warning("broker refused the wake-up of %d job(s) (%s): %s; retrying in %.1f s",
                    len(r.ids), r.ids[0], r.error, dispatch_backoff(tries, tick))
