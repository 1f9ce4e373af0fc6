"""The outbox relay: wake workers for committed jobs, and re-send messages the broker lost."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from crisper.engine.dispatch import BrokerEpoch, Refusal, queue_depth
from crisper.store import queues as queue_sql
from crisper.store import sweeps as sweep_sql
from crisper.store import utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from crisper.app import Crisper

log = logging.getLogger(__name__)
BATCH = 500
MAX_BACKOFF_SECONDS = 60.0


def dispatch_backoff(attempts: int, tick: float) -> float:
    """Seconds before a refused message is tried again: doubling from one tick, capped."""
    return min(MAX_BACKOFF_SECONDS, tick * 2.0 ** max(0, attempts - 1))


class Relay:
    """The relay of one scheduler: remembers the broker epoch it has already recovered from."""

    def __init__(self) -> None:
        self._epoch: BrokerEpoch | None = None
        self._recovered: datetime | None = None

    def relay(self, crisper: Crisper, at: datetime) -> int:
        """Re-send what a restarted broker lost, then publish jobs with no message out yet.

        Lost jobs go first: they are older than anything submitted since.
        """
        return self.recover_lost(crisper) + relay(crisper, at)

    def recover_lost(self, crisper: Crisper) -> int:
        """Once per broker epoch: re-send every queued job dispatched before it began.

        This does not wait for the queue to drain: a broker that restarted empty under load
        gets new messages at once, and the lost jobs must not wait behind them.
        """
        if self._epoch is None:
            self._epoch = BrokerEpoch(crisper.celery)
        began = self._epoch.began_at()
        if began is None or began == self._recovered:
            return 0
        sent = 0
        while True:
            with crisper.store.transaction() as session:
                lost = sweep_sql.dispatched_before(session, began, BATCH)
                if lost:
                    _publish(crisper, session, lost, began)
            sent += len(lost)
            if len(lost) < BATCH:
                break
        if sent:  # at start-up the broker may still hold them: then these are duplicates
            log.log(logging.WARNING if self._recovered else logging.INFO,
                    "re-sent %d wake-up(s) published before the broker's memory began (%s)",
                    sent, began.isoformat())
        self._recovered = began
        return sent

    def close(self) -> None:
        if self._epoch is not None:
            self._epoch.close()


def relay(crisper: Crisper, at: datetime) -> int:
    """Publish queued jobs with no message out yet. Row locks keep other relays off them."""
    with crisper.store.transaction() as session:
        todo = sweep_sql.undispatched(session, BATCH, queue_sql.paused(session), at)
        if todo:
            _publish(crisper, session, todo, at)
    return len(todo)


def redispatch_lost(crisper: Crisper, at: datetime) -> int:
    """Re-send queued jobs whose message went out long ago when their queue holds none.

    The broker epoch catches a restart; this catches the rest (a message acknowledged but
    never claimed): jobs the database calls queued and a queue with nothing in it.
    A duplicate message is harmless (the claim admits one).
    """
    before = at - timedelta(seconds=crisper.settings.redispatch_after_seconds)
    with crisper.store.read() as session:
        queues = sweep_sql.queues_with_stale_dispatch(session, before)
    sent = 0
    for queue in queues:
        if queue_depth(crisper.celery, queue) != 0:
            continue  # messages still wait there (or the broker cannot say): nothing is lost
        with crisper.store.transaction() as session:
            stale = sweep_sql.stale_dispatched(session, queue, before, BATCH)
            if stale:
                _publish(crisper, session, stale, at)
        sent += len(stale)
    return sent


def _publish(crisper: Crisper, session: Session, todo: list[sweep_sql.Dispatch],
             at: datetime) -> None:
    """Publish and record: sent jobs are dispatched; refused ones wait with their error.

    BrokerUnavailable (the broker is down) propagates: nothing is recorded, everything waits.
    """
    refusals = crisper.publish(todo)
    refused = {i for r in refusals for i in r.ids}
    sent_at = max(at, utcnow())  # when the messages were out (not when the tick began)
    sweep_sql.mark_dispatched(session, [d.id for d in todo if d.id not in refused], sent_at)
    if refusals:
        record_refusals(crisper, session, todo, refusals, at)


def record_refusals(crisper: Crisper, session: Session, todo: list[sweep_sql.Dispatch],
                    refusals: list[Refusal], at: datetime) -> None:
    """Each refused job waits, with the broker's answer, for a back-off that grows per refusal."""
    attempts = {d.id: d.dispatch_attempts for d in todo}
    tick = crisper.settings.tick_seconds
    for r in refusals:
        tries = 1 + max(attempts.get(i, 0) for i in r.ids)
        retry_at = at + timedelta(seconds=dispatch_backoff(tries, tick))
        sweep_sql.mark_dispatch_refused(session, r.ids, r.error, retry_at)
        log.warning("broker refused the wake-up of %d job(s) (%s): %s; retrying in %.1f s",
                    len(r.ids), r.ids[0], r.error, dispatch_backoff(tries, tick))
