"""The relay's look for lost wake-ups costs the same with a long backlog as with none.

Every 2 s the relay asks which queues hold a job whose wake-up went out long ago, and for
those whose broker queue is empty, re-sends a wake-up for a batch of them. With 300,000 jobs
queued, the question read every one of them (127 ms) and each batch sorted them all by
priority (220 ms), though a wake-up names no job. Now the queues are found by a skip scan of
the dispatch index, a batch is taken oldest message first, in that index's order, and
neither may sort. Here the tables are analyzed empty, as on an idle server, before the
backlog comes, and each statement's plan is read where it runs.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from crisper.store import sweeps as sweep_sql
from crisper.store import utcnow
from tests.harness import Backend
from tests.integration.backlogs import analyze, explained, fill, jobs_pages_read, nodes

pytestmark = pytest.mark.backends("postgres-redis")
BACKLOG = 20_000
JOB = "plan.noop"


def test_the_relay_finds_stale_queues_and_their_jobs_without_reading_the_backlog(
        backend: Backend) -> None:
    # Given tables analyzed empty, then four queues: 20,000 jobs told a worker an hour ago,
    # 5 told half an hour ago, 50 told just now, and 50 not told yet
    app = backend.app_with(queues=["default"])
    analyze(app, "crisper_jobs")
    tag = uuid.uuid4().hex[:8]
    backlog, few, fresh, untold = (f"relay-{name}-{tag}" for name in
                                   ("backlog", "few", "fresh", "untold"))
    now = utcnow()
    with app.store.transaction() as session:
        fill(session, backlog, JOB, BACKLOG, first=1, dispatched=now - timedelta(hours=1))
        fill(session, few, JOB, 5, first=BACKLOG + 1, dispatched=now - timedelta(minutes=30))
        fill(session, fresh, JOB, 50, first=BACKLOG + 6, dispatched=now)
        fill(session, untold, JOB, 50, first=BACKLOG + 56)
    before = now - timedelta(minutes=1)

    # When the relay asks which queues hold stale jobs, takes a batch of one of them, and a
    # batch of everything sent before a broker restart
    with app.store.transaction() as session:
        queues, asked = explained(
            session, lambda s: sweep_sql.queues_with_stale_dispatch(s, before))
    with app.store.transaction() as session:
        stale, batch = explained(
            session, lambda s: sweep_sql.stale_dispatched(s, backlog, before, 500))
    with app.store.transaction() as session:
        lost, recovery = explained(
            session, lambda s: sweep_sql.dispatched_before(s, now - timedelta(minutes=45), 500))

    # Then the answers are right: the two queues with stale jobs, 500 of the backlog's, and
    # 500 of those sent before the restart (the backlog's, the oldest)
    assert sorted(queues) == sorted([backlog, few])
    assert len(stale) == 500 and {d.queue for d in stale} == {backlog}
    assert len(lost) == 500 and {d.queue for d in lost} == {backlog}

    # And no statement sorted or read more than a few dozen pages of the jobs (the backlog
    # fills about 500)
    for plan in (asked, batch, recovery):
        assert "Sort" not in {n["Node Type"] for n in nodes(plan)}, plan
        assert jobs_pages_read(plan) < 100, jobs_pages_read(plan)
    app.store.close()
