"""`workflow.finished`: every end of a workflow is announced once to the tenant's subscribers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crisper import Crisper
from crisper.maintenance.workflows import announce_finished
from crisper.store import utcnow
from crisper.store.deliveries import DeliveryRecord
from tests.apps import graph
from tests.harness import Backend


@pytest.fixture
def app(backend: Backend) -> Iterator[Crisper]:
    crisper = graph.build(backend.settings)
    yield crisper
    crisper.store.close()


def announced(app: Crisper) -> list[DeliveryRecord]:
    return [d for d in app.webhooks.deliveries("default") if d.event == "workflow.finished"]


def test_each_end_of_a_workflow_is_announced_once(app: Crisper) -> None:
    # Given a subscriber to workflow.finished, and a chain whose nodes have not run
    app.webhooks.subscribe("https://hooks.example.com/flows", ["workflow.finished"], "default")
    wf = app.workflow("announced")
    wf.add("graph.square", {"n": 2}, name="b", after=wf.add("graph.square", {"n": 1}, name="a"))
    view = wf.submit()
    assert announce_finished(app.store, utcnow()) == 0  # queued and waiting: not ended

    # When it is cancelled, and two schedulers look for ended workflows
    app.workflows.cancel(view.id)
    noted = [announce_finished(app.store, utcnow()), announce_finished(app.store, utcnow())]

    # Then one of them announces it, with its status and its nodes' states
    assert sorted(noted) == [0, 1]
    [first] = announced(app)
    assert first.url == "https://hooks.example.com/flows" and first.state == "pending"
    assert first.body["data"]["id"] == str(view.id)
    assert first.body["data"]["status"] == "cancelled"
    assert first.body["data"]["nodes"] == {"cancelled": 2}

    # And a resumed workflow that ends again is announced again, as a new event
    app.workflows.retry(view.id)
    assert announce_finished(app.store, utcnow()) == 0  # running again
    app.workflows.cancel(view.id)
    assert announce_finished(app.store, utcnow()) == 1
    assert len({d.event_id for d in announced(app)}) == 2


def test_a_tenant_without_subscribers_gets_no_delivery(app: Crisper) -> None:
    wf = app.workflow("quiet")
    wf.add("graph.square", {"n": 1}, name="a")
    app.workflows.cancel(wf.submit().id)
    assert announce_finished(app.store, utcnow()) == 1  # noted, so not looked at again
    assert announce_finished(app.store, utcnow()) == 0
    assert announced(app) == []
