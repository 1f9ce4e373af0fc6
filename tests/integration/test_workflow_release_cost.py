"""Releasing children costs a fixed number of statements per finished node, however wide."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from crisper import Crisper, JobState
from crisper.store import attempts as attempt_sql
from crisper.store import utcnow
from tests.apps import graph
from tests.harness import Backend

S = JobState
pytestmark = pytest.mark.backends("postgres-redis")


@pytest.fixture
def app(backend: Backend) -> Iterator[Crisper]:
    crisper = graph.build(backend.settings)
    yield crisper
    crisper.store.close()


def finish_counting(app: Crisper, job_id: uuid.UUID) -> tuple[int, int]:
    """Claim and succeed one job as a worker does; answer (statements, children queued)."""
    with app.store.autocommit() as conn:
        claimed = attempt_sql.claim(conn, [job_id], "w", "t", 30, utcnow())
    assert claimed
    sent: list[str] = []

    def count(*args: Any) -> None:
        sent.append(args[2])

    event.listen(app.store.engine, "before_cursor_execute", count)
    try:
        released: list[Any] = []
        with app.store.transaction() as session:
            attempt_sql.finish(session, job_id, claimed[0].lease_token, S.SUCCEEDED, utcnow(),
                               reason="succeeded", result=1, released=released,
                               notifies=claimed[0].notifies)  # as the worker passes it
    finally:
        event.remove(app.store.engine, "before_cursor_execute", count)
    return len(sent), len(released)


@pytest.mark.parametrize("width", [3, 300])
def test_a_parent_releases_any_number_of_children_in_the_same_few_statements(
        app: Crisper, width: int) -> None:
    wf = app.workflow("wide")
    root = wf.add("graph.square", {"n": 0}, name="root")
    fan = wf.map("graph.square", [{"n": i} for i in range(width)], name="sq", after=root)
    wf.add("graph.join", name="join", after=fan)
    view = app.workflows.get(wf.submit().id)

    # the root's end queues all its children
    statements, queued = finish_counting(app, view.node("root").id)
    assert queued == width
    assert statements <= 4  # finish (+event), lock children, count down, their events

    # each fan-out node's end counts the fan-in down with as few, and no sibling is read
    costs = [finish_counting(app, view.node(f"sq[{i}]").id) for i in range(3)]
    assert max(n for n, _ in costs) <= 4  # the last parent also writes the fan-in's event
    join = app.workflows.get(view.id).node("join")
    if width == 3:
        assert costs[-1][1] == 1 and join.state is S.QUEUED
    else:
        assert join.state is S.WAITING and join.pending_parents == width - 3


def test_children_released_by_a_process_that_never_publishes_are_sent_by_the_relay(
        backend: Backend, app: Crisper) -> None:
    # Given a chain whose first node ends where nobody publishes the child's wake-up (as when
    # a worker dies right after its commit, or the lifeline ends a node)
    wf = app.workflow("relayed")
    wf.add("graph.square", {"n": 5}, name="b", after=wf.add("graph.square", {"n": 2}, name="a"),
           receive=True)
    view = app.workflows.get(wf.submit().id)
    with app.store.autocommit() as conn:
        claimed = attempt_sql.claim(conn, [view.node("a").id], "gone", "t", 30, utcnow())
    with app.store.transaction() as session:
        attempt_sql.finish(session, claimed[0].id, claimed[0].lease_token, S.SUCCEEDED,
                           utcnow(), reason="succeeded", result=4)
    assert app.jobs.get(view.node("b").id).state is S.QUEUED

    # When a worker and the scheduler run, Then the relay sends it and it runs
    backend.start_worker(CRISPER_APP="tests.apps.graph")
    backend.start_scheduler(CRISPER_APP="tests.apps.graph")
    assert app.workflows.wait(view.id, timeout=120).status == "succeeded"
    assert app.jobs.get(view.node("b").id).result == 25
