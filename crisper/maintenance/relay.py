"""The outbox relay: wake workers for committed jobs, and re-send messages the broker lost."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from crisper.engine.dispatch import queue_depth
from crisper.store import jobs as job_sql
from crisper.store import queues as queue_sql

if TYPE_CHECKING:
    from crisper.app import Crisper

BATCH = 500


def relay(crisper: Crisper, at: datetime) -> int:
    """Publish queued jobs with no message out yet. Row locks keep other relays off them."""
    with crisper.store.transaction() as session:
        todo = job_sql.undispatched(session, BATCH, queue_sql.paused(session))
        if todo:
            crisper.publish(todo)
            job_sql.mark_dispatched(session, job_sql.ids_of(todo), at)
    return len(todo)


def redispatch_lost(crisper: Crisper, at: datetime) -> int:
    """Re-send queued jobs whose message went out long ago when their queue holds none.

    A broker that restarted empty leaves exactly this: jobs the database calls queued and
    a queue with nothing in it. A duplicate message is harmless (the claim admits one).
    """
    before = at - timedelta(seconds=crisper.settings.redispatch_after_seconds)
    with crisper.store.read() as session:
        queues = job_sql.queues_with_stale_dispatch(session, before)
    sent = 0
    for queue in queues:
        if queue_depth(crisper.celery, queue) != 0:
            continue  # messages still wait there (or the broker cannot say): nothing is lost
        with crisper.store.transaction() as session:
            stale = job_sql.stale_dispatched(session, queue, before, BATCH)
            if stale:
                crisper.publish(stale)
                job_sql.mark_dispatched(session, job_sql.ids_of(stale), at)
        sent += len(stale)
    return sent
