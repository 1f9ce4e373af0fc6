"""Timers fire at their time, not at the maintenance loop's next tick: a delayed job (a
run_at, a retry's back-off, a rate limit's slot) is queued and its wake-up sent within
milliseconds of its time, where a tick of 0.5 s let it wait up to a tick for the timers and
up to another for the relay's publish."""

from __future__ import annotations

import statistics
import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from crisper.store.models import jobs
from tests.harness import Backend, wait_for

pytestmark = pytest.mark.backends("postgres-redis")


def test_delayed_jobs_are_queued_and_sent_at_their_time_not_a_tick_later(
        backend: Backend) -> None:
    # Given a maintenance loop ticking every 0.5 s
    queue = f"timed-{uuid.uuid4().hex[:8]}"
    app = backend.app_with(queues=[queue], tick_seconds=0.5)
    loop, stop = app.maintenance_loop(), threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    try:
        # When eight jobs are submitted to run 0.4 s from now and then 130 ms apart, a spacing
        # the tick does not divide
        handles = [app.submit("probe.noop", queue=queue, delay=timedelta(seconds=0.4 + 0.13 * i))
                   for i in range(8)]
        ids = [h.id for h in handles]

        def sent() -> list[tuple[object, ...]] | None:
            with app.store.read() as session:
                rows = session.execute(select(jobs.c.run_at, jobs.c.queued_at,
                                              jobs.c.dispatched_at).where(jobs.c.id.in_(ids))
                                       ).all()
            return [tuple(r) for r in rows] if all(r[2] for r in rows) else None

        rows = wait_for(sent, 15, "every delayed job to be queued and sent")
    finally:
        stop.set()
        thread.join(timeout=15)

    # Then each was queued at its time and its wake-up went out right after, where a tick
    # of 0.5 s made them 0.25 s late in the median, up to about 1 s with the relay's turn
    # (spread evenly over the tick, about 1.6 of 8 would fall within 0.1 s). Six of eight
    # are asked to: on a loaded CI machine one or two were once late by 0.39-0.52 s, this
    # test's own process held back, not a tick.
    queued_late = [(queued - run_at).total_seconds() for run_at, queued, _ in rows]
    sent_late = [(sent_at - run_at).total_seconds() for run_at, _, sent_at in rows]
    print(f"\nqueued late by {sorted(round(s * 1000) for s in queued_late)} ms, "
          f"sent late by {sorted(round(s * 1000) for s in sent_late)} ms")
    assert min(queued_late) >= 0  # never before its time
    assert statistics.median(queued_late) < 0.1 and sorted(queued_late)[5] < 0.1
    assert statistics.median(sent_late) < 0.15 and sorted(sent_late)[5] < 0.15
    assert not thread.is_alive()
