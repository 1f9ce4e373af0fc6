"""The outbox relay: wake workers for committed jobs, and re-send messages the broker lost."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from crisper.engine.dispatch import BrokerEpoch
from crisper.engine.dispatcher import (  # noqa: F401 - the back-off is the relay's to tests
    MAX_BACKOFF_SECONDS,
    Dispatcher,
    dispatch_backoff,
    record_refusals,
)
from crisper.settings import Settings
from crisper.store import Store, utcnow
from crisper.store import queues as queue_sql
from crisper.store import sweeps as sweep_sql

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
BATCH = 500


class Relay:
    """The relay of one maintenance loop: remembers the broker epoch it has already
    recovered from."""

    def __init__(self, store: Store, dispatcher: Dispatcher, settings: Settings) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.settings = settings
        self._epoch: BrokerEpoch | None = None
        self._recovered: datetime | None = None

    def relay(self, at: datetime) -> int:
        """Re-send what a restarted broker lost, then publish jobs with no message out yet.

        Lost jobs go first: they are older than anything submitted since.
        """
        return self.recover_lost() + self.send_undispatched(at)

    def recover_lost(self) -> int:
        """Once per broker epoch: re-send every queued job dispatched before it began.

        This does not wait for the queue to drain: a broker that restarted empty under load
        gets new messages at once, and the lost jobs must not wait behind them.
        """
        if self._epoch is None:
            self._epoch = self.dispatcher.epoch()
        began = self._epoch.began_at()
        if began is None or began == self._recovered:
            return 0
        sent = 0
        while True:
            with self.store.transaction() as session:
                lost = sweep_sql.dispatched_before(session, began, BATCH)
                if lost:
                    self._publish(session, lost, began, force=True)
            sent += len(lost)
            if len(lost) < BATCH:
                break
        if sent:  # at start-up the broker may still hold them: then these are duplicates
            log.log(logging.WARNING if self._recovered else logging.INFO,
                    "re-sent %d wake-up(s) published before the broker's memory began (%s)",
                    sent, began.isoformat())
        self._recovered = began
        return sent

    def send_undispatched(self, at: datetime) -> int:
        """Publish queued jobs with no message out yet. Row locks keep other relays off them."""
        with self.store.transaction() as session:
            todo = sweep_sql.undispatched(session, BATCH, queue_sql.paused(session), at)
            if todo:
                self._publish(session, todo, at)
        return len(todo)

    def redispatch_lost(self, at: datetime) -> int:
        """Re-send queued jobs whose message went out long ago when their queue holds none.

        The broker epoch catches a restart; this catches the rest (a message acknowledged but
        never claimed): jobs the database calls queued and a queue with nothing in it.
        A duplicate message is harmless (the claim admits one).
        """
        before = at - timedelta(seconds=self.settings.redispatch_after_seconds)
        with self.store.read() as session:
            queues = sweep_sql.queues_with_stale_dispatch(session, before)
        sent = 0
        for queue in queues:
            if self.dispatcher.queue_depth(queue) != 0:
                continue  # messages still wait there (or the broker cannot say): nothing is lost
            with self.store.transaction() as session:
                stale = sweep_sql.stale_dispatched(session, queue, before, BATCH)
                if stale:
                    self._publish(session, stale, at, force=True)
            sent += len(stale)
        return sent

    def _publish(self, session: Session, todo: list[sweep_sql.Dispatch], at: datetime,
                 force: bool = False) -> None:
        """Publish and record: sent jobs are dispatched; refused ones wait with their error.

        One wake-up per queue and job type covers all of `todo` (its taker claims them one by
        one and wakes more slots). Jobs with no message yet are woken only if no wake-up is
        outstanding for their queue and type (engine/wakes.py); `force`, for jobs whose
        wake-up may be lost (a broker restarted empty, a queue left with none), sends anyway.

        BrokerUnavailable (the broker is down) propagates: nothing is recorded, everything waits.
        """
        refusals = self.dispatcher.publish(todo, force=force)
        refused = {i for r in refusals for i in r.ids}
        sent_at = max(at, utcnow())  # when the messages were out (not when the tick began)
        sweep_sql.mark_dispatched(session, [d.id for d in todo if d.id not in refused], sent_at)
        if refusals:
            record_refusals(session, todo, refusals, at, self.settings.tick_seconds)

    def close(self) -> None:
        if self._epoch is not None:
            self._epoch.close()
