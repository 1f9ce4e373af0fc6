"""The lifeline does not mistake an outage of writes for lost workers.

A full (or read-only) disk under SQLite still answers reads while every write fails: the
workers cannot renew their leases, and the lifeline, whose passes mostly only read, must not
count such a pass as having seen the database back. Here the outage is a second store on the
same file whose transactions switch on `PRAGMA query_only`: reads work, writes fail, as on a
full disk.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event

from crisper import Crisper, JobState
from crisper.errors import StoreUnavailable
from crisper.maintenance.lifeline import Lifeline
from crisper.store import Store, utcnow
from crisper.store import attempts as attempt_sql
from tests.harness import Backend

pytestmark = pytest.mark.backends("sqlite-embedded")
LEASE = 1.0


def writes_refused(url: str) -> Store:
    """A store whose transactions begin (and take the write lock), read, and fail to write."""
    store = Store(url)

    def read_only(conn: Any) -> None:  # after BEGIN IMMEDIATE; each connection is fresh
        conn.exec_driver_sql("PRAGMA query_only = ON")

    event.listen(store.engine, "begin", read_only)
    return store


def claimed(app: Crisper) -> tuple[uuid.UUID, uuid.UUID]:
    job_id = app.submit("probe.noop").id
    with app.store.transaction() as session:
        [job] = attempt_sql.claim(session, [job_id], "w1", "t1", LEASE, utcnow())
    return job_id, job.lease_token


def passes(lifeline: Lifeline, seconds: float) -> list[str]:
    """Run the lifeline's passes for `seconds`, as its loop would: what each pass did."""
    seen, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            seen.append(f"rescued {lifeline(utcnow())}")
        except StoreUnavailable:
            seen.append("blind")
        time.sleep(0.1)
    return seen


def test_a_lease_that_expired_while_writes_failed_is_kept_until_its_worker_could_renew(
        backend: Backend) -> None:
    app = backend.app_with(lease_seconds=LEASE)
    good, bad = app.store, writes_refused(app.settings.resolved_database_url())
    try:
        # Given a lifeline that has seen the database, then a running job (in this order: its
        # lease is one second, which a loaded machine once spent between claim and first pass)
        lifeline = Lifeline(good, app.settings)
        assert lifeline(utcnow()) == 0
        job_id, token = claimed(app)

        # When writes fail (reads work) for longer than the lease and its grace together
        lifeline.store = bad
        during = passes(lifeline, 3 * LEASE)

        # Then the pass that had a lease to rescue was blind, and so was every later one
        # (their reads worked; their writes did not), and nothing was rescued
        assert during[0] == "rescued 0" and "blind" in during, during
        assert during[during.index("blind"):] == ["blind"] * (len(during) - during.index("blind"))
        assert app.jobs.get(job_id).state is JobState.RUNNING

        # And once writes work again, the worker's renewal comes first and keeps the job
        lifeline.store = good
        assert set(passes(lifeline, 0.3 * LEASE)) == {"rescued 0"}
        assert app.jobs.get(job_id).state is JobState.RUNNING
        with good.transaction() as session:
            assert attempt_sql.renew_leases(session, {job_id: token},
                                            utcnow() + timedelta(seconds=LEASE))
        assert set(passes(lifeline, 0.5 * LEASE)) == {"rescued 0"}
        assert app.jobs.get(job_id).state is JobState.RUNNING

        # But a worker that never renews is rescued a whole lease after writes came back
        time.sleep(LEASE)
        assert "rescued 1" in passes(lifeline, 2 * LEASE)
        assert app.jobs.get(job_id).state is JobState.QUEUED
    finally:
        bad.close()
