"""The store's contract, one suite run against every store (PostgreSQL, with its one-statement
fast path, and SQLite, with its portable statements), so the two cannot drift: claims are
conditional, outcomes are fenced by the lease token, a cancel request is noted once, timers
move only due jobs, and a lost lease is found by the lifeline's sweep."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from crisper import Crisper, JobState
from crisper.errors import InvalidTransition
from crisper.store import attempts as attempt_sql
from crisper.store import sweeps as sweep_sql
from crisper.store import utcnow
from tests.harness import Backend

S = JobState


@pytest.fixture
def app(backend: Backend) -> Crisper:
    return backend.app_with(queues=["default"])


def claim(app: Crisper, ids: list[uuid.UUID], lease: float = 60.0, autocommit: bool = False
          ) -> list[attempt_sql.Claimed]:
    store = app.store.autocommit() if autocommit else app.store.transaction()
    with store as db:
        return attempt_sql.claim(db, ids, "w1", "t1", lease, utcnow())


@pytest.mark.parametrize("autocommit", [False, True])
def test_a_claim_takes_queued_jobs_once(app: Crisper, autocommit: bool) -> None:
    queued = app.submit("probe.noop").id
    held = app.submit("probe.noop", hold=True).id
    claimed = claim(app, [queued, held, uuid.uuid4()], autocommit=autocommit)
    assert [(c.id, c.attempt) for c in claimed] == [(queued, 1)]
    assert claim(app, [queued], autocommit=autocommit) == []  # a duplicate message: nothing
    assert app.jobs.get(held).state is S.HELD


def test_an_outcome_is_written_only_by_the_lease_holder(app: Crisper) -> None:
    job = app.submit("probe.noop").id
    (claimed,) = claim(app, [job])
    with app.store.autocommit() as conn:
        assert not attempt_sql.finish(conn, job, uuid.uuid4(), S.SUCCEEDED, utcnow(),
                                      reason="succeeded", result=1)  # another token
        assert attempt_sql.finish(conn, job, claimed.lease_token, S.SUCCEEDED, utcnow(),
                                  reason="succeeded", result=2, notifies=False)
        assert not attempt_sql.finish(conn, job, claimed.lease_token, S.FAILED, utcnow(),
                                      reason="error")  # ended already
    record = app.jobs.get(job)
    assert (record.state, record.result, record.lease_expires_at) == (S.SUCCEEDED, 2, None)


def test_an_attempt_cannot_end_as_queued_it_is_handed_back(app: Crisper) -> None:
    job = app.submit("probe.noop").id
    (claimed,) = claim(app, [job])
    with app.store.transaction() as session, pytest.raises(InvalidTransition):
        attempt_sql.finish(session, job, claimed.lease_token, S.QUEUED, utcnow(), reason="x")
    with app.store.transaction() as session:
        assert attempt_sql.rescue(session, job, claimed.lease_token, utcnow(),
                                  reason="lease_expired", counted=False)
    record = app.jobs.get(job)
    assert (record.state, record.attempt) == (S.QUEUED, 1)
    (again,) = claim(app, [job])
    assert (again.attempt, again.spent) == (2, 1)  # the handed-back attempt is not spent


def test_a_cancel_request_is_noted_once_and_renewals_report_it(app: Crisper) -> None:
    job = app.submit("probe.noop").id
    (claimed,) = claim(app, [job])
    until = utcnow() + timedelta(seconds=60)
    with app.store.transaction() as session:
        assert attempt_sql.renew_leases(session, {job: claimed.lease_token}, until) == \
            {job: False}
    assert app.jobs.cancel(job).state is S.RUNNING
    assert app.jobs.cancel(job).state is S.RUNNING  # asked again: no second note
    with app.store.transaction() as session:
        assert attempt_sql.renew_leases(session, {job: claimed.lease_token}, until) == \
            {job: True}
        assert attempt_sql.renew_leases(session, {job: uuid.uuid4()}, until) == {}
    notes = [(e.from_state, e.to_state, e.reason) for e in app.jobs.events(job)
             if e.to_state is None]
    assert notes == [(None, None, "cancel_requested")]


def test_timers_move_only_due_jobs(app: Crisper) -> None:
    soon = app.submit("probe.noop", delay="1m").id
    later = app.submit("probe.noop", delay="1h").id
    with app.store.transaction() as session:
        assert sweep_sql.promote_due(session, utcnow() + timedelta(minutes=5), 100) == 1
    assert (app.jobs.get(soon).state, app.jobs.get(later).state) == (S.QUEUED, S.SCHEDULED)


def test_the_lifeline_sweep_finds_expired_leases_only(app: Crisper) -> None:
    short, long = app.submit("probe.noop").id, app.submit("probe.noop").id
    claim(app, [short], lease=1)
    claim(app, [long], lease=600)
    with app.store.transaction() as session:
        found = sweep_sql.expired_leases(session, utcnow() + timedelta(seconds=30), 10)
    assert [(lease.id, lease.attempt, lease.cancel_requested) for lease in found] == \
        [(short, 1, False)]
