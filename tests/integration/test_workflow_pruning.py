"""Retention and workflows: a workflow's own rows (its head and its edges) are deleted once it
has ended and every job of it was pruned; never while a node of it is left."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from crisper import Crisper, WorkflowNotFound
from crisper.maintenance.pruner import prune
from crisper.maintenance.workflows import announce_finished
from crisper.store import utcnow
from crisper.store.models import workflow_edges
from tests.apps import graph
from tests.harness import Backend

pytestmark = pytest.mark.backends("postgres-redis")


@pytest.fixture
def app(backend: Backend) -> Iterator[Crisper]:
    crisper = graph.build(backend.settings)
    yield crisper
    crisper.store.close()


def edge_count(app: Crisper, workflow_id: object) -> int:
    with app.store.read() as session:
        return int(session.scalar(select(func.count()).select_from(workflow_edges)
                                  .where(workflow_edges.c.workflow_id == workflow_id)) or 0)


def test_a_finished_workflow_goes_once_all_its_jobs_are_pruned(
        backend: Backend, app: Crisper) -> None:
    # Given a finished chain of three, and a workflow whose node is still running
    backend.start_worker(**{"CRISPER_APP": "tests.apps.graph"})
    wf = app.workflow("done")
    a = wf.add("graph.square", {"n": 2}, name="a")
    b = wf.add("graph.square", {"n": 3}, name="b", after=a)
    wf.add("graph.square", {"n": 4}, name="c", after=b)
    done = app.workflows.wait(wf.submit().id, timeout=60)
    assert done.status == "succeeded" and edge_count(app, done.id) == 2
    busy = app.workflow("busy")
    nap = busy.add("graph.nap", {"seconds": 30}, name="nap")
    busy.add("graph.square", {"n": 1}, name="after", after=nap)
    running = busy.submit()
    later = utcnow() + timedelta(seconds=app.settings.retention_seconds + 60)

    # When the pruner runs past the retention before the workflow's end was noted
    prune(app.store, app.settings, app.registry, later)

    # Then its jobs and edges are gone, but not its head: workflow.finished is still to write
    kept = app.workflows.get(done.id)
    assert kept.nodes == [] and edge_count(app, done.id) == 0

    # And once its end is noted, the next prune deletes it; the running one stays whole
    assert announce_finished(app.store, utcnow()) == 1
    prune(app.store, app.settings, app.registry, later)
    with pytest.raises(WorkflowNotFound):
        app.workflows.get(done.id)
    still = app.workflows.get(running.id)
    assert len(still.nodes) == 2 and edge_count(app, running.id) == 1
    app.workflows.cancel(running.id)
