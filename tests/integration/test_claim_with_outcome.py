"""In a backlog, a job's outcome and the claim of its queue's next job are one statement."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, select

from crisper import Crisper, JobContext, JobState
from crisper.store import attempts as attempt_sql
from crisper.store import utcnow
from crisper.store.models import jobs
from tests.harness import Backend

S = JobState
pytestmark = pytest.mark.backends("postgres-redis")


@pytest.fixture
def job_updates() -> Iterator[list[str]]:
    """Every statement that moves a job, as SQLAlchemy's hooks see it while the test runs."""
    seen: list[str] = []

    def grab(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "UPDATE crisper_jobs SET state" in statement:
            seen.append(statement)

    event.listen(Engine, "before_cursor_execute", grab)
    yield seen
    event.remove(Engine, "before_cursor_execute", grab)


def test_a_backlog_costs_one_statement_per_job_after_its_body_and_every_outcome_is_right(
        backend: Backend, job_updates: list[str]) -> None:
    # Given 20 jobs queued on one queue: every fifth fails (no retry), the others answer 2n
    queue = f"fused-{uuid.uuid4().hex[:8]}"
    app = Crisper("fused", settings=backend.settings.model_copy(update={"queues": [queue]}))

    @app.job(name="fused.work", queue=queue, retry=1)
    def work(ctx: JobContext, n: int) -> int:
        if n % 5 == 0:
            raise ValueError(f"no {n}")
        return 2 * n

    handles = [app.submit("fused.work", {"n": n}) for n in range(20)]
    wake = SimpleNamespace(id="wake-1", hostname="test", delivery_info={"routing_key": queue})

    # When one slot takes the queue's wake-up
    app.runner.run(app.registry.get("fused.work"), [], wake)

    # Then every job ended as its body said, and its events tell each move once, in order
    for n, handle in enumerate(handles):
        record = handle.refresh().record
        if n % 5 == 0:
            assert (record.state, record.error["message"]) == (S.FAILED, f"no {n}")
        else:
            assert (record.state, record.result) == (S.SUCCEEDED, 2 * n)
        assert [(e.from_state, e.to_state, e.reason) for e in app.jobs.events(handle.id)] == [
            (None, "queued", "submitted"), ("queued", "running", "claimed"),
            ("running", record.state.value, "error" if n % 5 == 0 else "succeeded")]
    # And they started in submission order, one attempt each
    started = [h.refresh().record for h in handles]
    assert [r.attempt for r in started] == [1] * 20
    assert [r.id for r in sorted(started, key=lambda r: r.started_at)] == [h.id for h in handles]
    # And the slot moved jobs in 22 statements: the first claim, one per job (its outcome
    # with the next claim; the last finds the queue empty) and one more claim, which finds
    # nothing and does not wait for locked rows
    fused = [s for s in job_updates if "finished AS" in s and "claimed AS" in s]
    assert (len(job_updates), len(fused)) == (22, 20)
    app.store.close()


def fused_app(backend: Backend, *types: str) -> tuple[Crisper, str]:
    """An app whose job types (no-op bodies) share a queue of their own."""
    queue = f"fused-{uuid.uuid4().hex[:8]}"
    app = Crisper("fused", settings=backend.settings.model_copy(update={"queues": [queue]}))
    for name in types:
        app.job(name=name, queue=queue)(lambda ctx: None)
    return app, queue


def claim_next(conn: Connection, queue: str, types: list[str]) -> attempt_sql.Claimed | None:
    return attempt_sql.claim_next(conn, queue, types, "w", "t", 30, utcnow())


def succeed_then_claim(conn: Connection, queue: str, types: list[str], job: uuid.UUID,
                       token: uuid.UUID) -> attempt_sql.FinishedThenClaimed:
    return attempt_sql.finish_then_claim_next(
        conn, job, token, S.SUCCEEDED, utcnow(), reason="succeeded", worker="w",
        queue=queue, types=types, task_id="t", lease_seconds=30)


def test_an_outcome_that_lost_its_lease_claims_nothing_in_its_statement(
        backend: Backend) -> None:
    types = ["fused.behind", "fused.first"]
    app, queue = fused_app(backend, *types)
    a = app.submit("fused.first")
    b = app.submit("fused.behind")

    with app.store.autocommit() as conn:
        # Given a claimed job whose lease was then taken (a rescue), and a job queued behind
        claimed = claim_next(conn, queue, types)
        assert claimed is not None and claimed.id == a.id
        assert attempt_sql.rescue(conn, a.id, claimed.lease_token, utcnow(),
                                  reason="lease_expired", counted=True)

        # When its slot records its outcome and asks for the next job in that statement
        recorded, following, waiting = succeed_then_claim(conn, queue, types, a.id,
                                                          claimed.lease_token)

    # Then the outcome is not recorded, and nothing was claimed: both jobs wait, queued
    assert (recorded, following) == (False, None) and waiting
    assert a.refresh().state is S.QUEUED and b.refresh().state is S.QUEUED
    app.store.close()


def test_an_outcome_whose_next_job_is_locked_says_jobs_wait_so_the_slot_tries_again(
        backend: Backend) -> None:
    types = ["fused.work"]
    app, queue = fused_app(backend, *types)
    a, b = app.submit("fused.work"), app.submit("fused.work")
    with app.store.autocommit() as conn:
        claimed = claim_next(conn, queue, types)
    assert claimed is not None and claimed.id == a.id

    # Given the job queued behind held locked for a moment by another transaction
    with app.store.transaction() as other:
        other.execute(select(jobs.c.id).where(jobs.c.id == b.id).with_for_update())
        # When the first job's outcome is recorded, with the claim of the next
        with app.store.autocommit() as conn:
            first = succeed_then_claim(conn, queue, types, a.id, claimed.lease_token)
    # Then nothing was claimed, but the statement says a job waits (the slot tries again)
    assert (first.recorded, first.claimed, first.waiting) == (True, None, True)
    # And once the lock is gone the next claim takes it, and its outcome sees the queue empty
    with app.store.autocommit() as conn:
        second = claim_next(conn, queue, types)
        assert second is not None and second.id == b.id
        last = succeed_then_claim(conn, queue, types, b.id, second.lease_token)
    assert (last.recorded, last.claimed, last.waiting) == (True, None, False)
    app.store.close()


def test_only_a_wake_ups_first_claim_asks_whether_others_wait(backend: Backend) -> None:
    # Given three jobs queued
    types = ["fused.work"]
    app, queue = fused_app(backend, *types)
    a, b, _ = (app.submit("fused.work") for _ in range(3))
    with app.store.autocommit() as conn:
        # When a slot claims the first, then records its outcome with the claim of the next
        first = claim_next(conn, queue, types)
        assert first is not None and first.id == a.id
        fused = succeed_then_claim(conn, queue, types, a.id, first.lease_token)

    # Then the first claim says others wait (its slot wakes one more), and the fused claim,
    # which no slot asks that of, leaves it unknown; its statement saw a job, so it waits
    assert first.others_waiting is True
    assert fused.claimed is not None and fused.claimed.id == b.id
    assert (fused.recorded, fused.claimed.others_waiting, fused.waiting) == (True, None, True)
    app.store.close()


def autocommit_engine(app: Crisper) -> Engine:
    """The engine of the app's autocommit connections (made now if it was not yet)."""
    return app.store._autocommit_engine_made()


def checked_out_backends(app: Crisper) -> dict[Any, int]:
    """The app's autocommit connections checked out of their pool, by pool record, with
    their server process (kept up to date by pool events from here on)."""
    out: dict[Any, int] = {}
    engine = autocommit_engine(app)
    event.listen(engine, "checkout",
                 lambda dbapi, record, _: out.__setitem__(record, dbapi.info.backend_pid))
    event.listen(engine, "checkin", lambda _, record: out.pop(record, None))
    return out


def test_a_backlog_s_outcome_and_claim_statements_share_one_connection(
        backend: Backend) -> None:
    # Given 20 queued jobs, and the pool's checkouts counted
    app, queue = fused_app(backend, "fused.work")
    handles = [app.submit("fused.work") for _ in range(20)]
    checkouts: list[int] = []
    engine = autocommit_engine(app)
    event.listen(engine, "checkout", lambda *_: checkouts.append(1))
    wake = SimpleNamespace(id="wake-1", hostname="test", delivery_info={"routing_key": queue})

    # When one slot takes the queue's wake-up
    app.runner.run(app.registry.get("fused.work"), [], wake)

    # Then every job succeeded, and its claims, outcomes and the look for a type to wake
    # another slot with took one checkout, not 23
    assert {h.refresh().state for h in handles} == {S.SUCCEEDED}
    assert len(checkouts) == 1
    # And the connection went back to the pool at the end of the wake-up
    assert engine.pool.checkedout() == 0
    app.store.close()


def test_a_held_connection_that_dies_is_let_go_and_the_outcome_written_on_a_fresh_one(
        backend: Backend) -> None:
    # Given 6 queued jobs, the third of which kills the connection its slot holds for the
    # outcome-and-claim statements (as a database restart would) while it runs
    queue = f"fused-{uuid.uuid4().hex[:8]}"
    app = Crisper("fused", settings=backend.settings.model_copy(update={"queues": [queue]}))
    killed: list[set[int]] = []
    checked_out = checked_out_backends(app)

    @app.job(name="fused.work", queue=queue)
    def work(ctx: JobContext, n: int) -> int:
        if n == 2:
            held = set(checked_out.values())  # the slot's held connection, idle meanwhile
            with app.store.autocommit() as conn:
                for pid in held:
                    conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
            killed.append(held)
        return n

    handles = [app.submit("fused.work", {"n": n}) for n in range(6)]
    wake = SimpleNamespace(id="wake-1", hostname="test", delivery_info={"routing_key": queue})

    # When one slot takes the queue's wake-up
    app.runner.run(app.registry.get("fused.work"), [], wake)

    # Then the killed connection was the one slot's, every job still ended right, once each
    assert len(killed) == 1 and len(killed[0]) == 1
    records = [h.refresh().record for h in handles]
    assert [(r.state, r.result, r.attempt) for r in records] == [
        (S.SUCCEEDED, n, 1) for n in range(6)]
    # And the connection was given back at the end of the wake-up
    assert not checked_out
    app.store.close()


def test_the_queued_type_hint_names_the_best_waiting_type_on_either_path(
        backend: Backend) -> None:
    # Given an empty queue shared by two types
    types = ["fused.low", "fused.high"]
    app, queue = fused_app(backend, *types)
    with app.store.autocommit() as conn, app.store.read() as session:
        assert attempt_sql.queued_type(conn, queue, types) is None
        assert attempt_sql.queued_type(session, queue, types) is None
        # When a low-priority job is queued, then a high-priority one
        app.submit("fused.low", priority=1)
        app.submit("fused.high", priority=9)
        # Then both paths (the driver's, the ORM's) name the high one's type, and only the
        # types asked about count
        assert attempt_sql.queued_type(conn, queue, types) == "fused.high"
        assert attempt_sql.queued_type(session, queue, types) == "fused.high"
        assert attempt_sql.queued_type(conn, queue, ["fused.low"]) == "fused.low"
        assert attempt_sql.queued_type(conn, f"{queue}-other", types) is None
    app.store.close()
