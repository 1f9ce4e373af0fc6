"""The relay's statements cost the same with a long backlog as with none.

Every 2 s the relay asks which queues hold a job whose wake-up went out long ago, and for
those whose broker queue is empty, re-sends a wake-up for a batch of them. With 300,000 jobs
queued, the question read every one of them (127 ms) and each batch sorted them all by
priority (220 ms), though a wake-up names no job. Every 0.5 s it sends the jobs whose
wake-up never went out: each batch sorted every such job (150-220 ms with 300,000, a queue
resumed after a pause), and a paused queue's were all read to be skipped (38-87 ms). Now the
queues are found by skip scans, a batch is read in an index's order, and none may sort. Here
the tables are analyzed empty, as on an idle server, before the backlog comes, and each
statement's plan is read where it runs.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from crisper.store import sweeps as sweep_sql
from crisper.store import utcnow
from tests.harness import Backend
from tests.integration.backlogs import explained, fill_queues, jobs_pages_read, nodes

pytestmark = pytest.mark.backends("postgres-redis")
BACKLOG = 20_000
JOB = "plan.noop"


def test_the_relay_finds_stale_queues_and_their_jobs_without_reading_the_backlog(
        backend: Backend) -> None:
    # Given tables analyzed empty, then four queues: 20,000 jobs told a worker an hour ago,
    # 5 told half an hour ago, 50 told just now, and 50 not told yet
    app = backend.app_with(queues=["default"])
    now = utcnow()
    q = fill_queues(app, JOB, {"backlog": (BACKLOG, now - timedelta(hours=1)),
                               "few": (5, now - timedelta(minutes=30)),
                               "fresh": (50, now), "untold": (50, None)})
    backlog, few = q["backlog"], q["few"]
    before = now - timedelta(minutes=1)

    # When the relay asks which queues hold stale jobs, takes a batch of one of them, and a
    # batch of everything sent before a broker restart
    with app.store.transaction() as session:
        queues, (asked,) = explained(
            session, lambda s: sweep_sql.queues_with_stale_dispatch(s, before))
    with app.store.transaction() as session:
        stale, (batch,) = explained(
            session, lambda s: sweep_sql.stale_dispatched(s, backlog, before, 500))
    with app.store.transaction() as session:
        lost, (recovery,) = explained(
            session, lambda s: sweep_sql.dispatched_before(s, now - timedelta(minutes=45), 500))

    # Then the answers are right: the two queues with stale jobs, 500 of the backlog's, and
    # 500 of those sent before the restart (the backlog's, the oldest)
    assert sorted(queues) == sorted([backlog, few])
    assert len(stale) == 500 and {d.queue for d in stale} == {backlog}
    assert len(lost) == 500 and {d.queue for d in lost} == {backlog}

    # And no statement sorted or read more than a few dozen pages of the jobs
    assert_index_bound(asked, batch, recovery)
    app.store.close()


def test_the_relay_sends_each_queue_its_unsent_jobs_without_reading_the_backlog(
        backend: Backend) -> None:
    # Given tables analyzed empty, then 20,000 jobs told a worker an hour ago, and three
    # queues of jobs not told yet: 20,000 on a paused queue, 20,000 and 50 on two others
    app = backend.app_with(queues=["default"])
    now = utcnow()
    q = fill_queues(app, JOB, {"told": (BACKLOG, now - timedelta(hours=1)),
                               "paused": (BACKLOG, None), "backlog": (BACKLOG, None),
                               "few": (50, None)})
    paused, backlog, few = q["paused"], q["backlog"], q["few"]

    # When the relay takes its batch of jobs to send, the paused queue's left out (of 200
    # here, 100 per queue: 500 of the backlog's best would be scattered over some 125 pages,
    # as every tenth job has priority 5)
    with app.store.transaction() as session:
        todo, plans = explained(
            session, lambda s: sweep_sql.undispatched(s, 200, {paused}, now))

    # Then it has the backlog's share, its best 100 (priority-5 jobs, oldest first), and the
    # other queue's 50, all highest priority first, and nothing of the paused or told queue
    by_queue = Counter(d.queue for d in todo)
    assert by_queue == {backlog: 100, few: 50}, by_queue
    assert [d.priority for d in todo] == sorted((d.priority for d in todo), reverse=True)
    firsts = [d for d in todo if d.queue == backlog]
    assert {d.priority for d in firsts} == {5}
    assert [d.id for d in firsts] == sorted(d.id for d in firsts)
    # And it ran three queries (the queues, then one batch each), none of which sorted or
    # read more than a few dozen pages
    assert len(plans) == 3, plans
    assert_index_bound(*plans)
    app.store.close()


def assert_index_bound(*plans: dict[str, Any]) -> None:
    """No plan sorted or read 100 pages of the jobs or more (a 20,000-job backlog fills
    about 500)."""
    for plan in plans:
        assert "Sort" not in {n["Node Type"] for n in nodes(plan)}, plan
        assert jobs_pages_read(plan) < 100, jobs_pages_read(plan)
