"""The world the security tests attack: two tenants, keys of each scope, a revoked key,
and one of everything the other tenant owns (job, schedule, batch, subscription, delivery,
workflow), served by a real API with the dashboard mounted."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from crisper.api import create_app
from crisper.app import Crisper
from crisper.keys import KeyService
from crisper.service import SubmitRequest
from crisper.store.models import batches, deliveries, jobs, queues, schedules, subscriptions
from tests.api_support import serve
from tests.harness import Backend

ME, THEM = "acme", "globex"
XSS = "<script>window.__xss=1</script>"
POISONED_QUEUES = ["unacked", "unacked_index", "_kombu.binding.default", "celeryev",
                   "celery.pidbox", "w1.reply.celery.pidbox", "amq.gen-1", "nope"]


@dataclass
class World:
    """An API on a real store: my tenant's keys and jobs, and another tenant's things."""

    url: str
    app: Crisper
    api: FastAPI
    admin: str  # my tenant, every scope
    reader: str  # my tenant, read only
    revoked: str
    their_job: uuid.UUID
    their_schedule: str
    my_job: uuid.UUID  # held, tagged "a_c"
    # Their batch, webhook delivery and subscription, by path placeholder.
    their_others: dict[str, str] = field(default_factory=dict)

    def http(self, secret: str | None = None, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kw)


@pytest.fixture
def world(backend: Backend) -> Iterator[World]:
    app = backend.app_with(queues=["email"])

    @app.job(name="sec.document")
    def document(ctx: Any, data: dict[str, Any] | None = None) -> None:
        """A type with a free JSON parameter (a JSON field in the dashboard's form)."""

    keys = KeyService(app.store)
    revoked = keys.create(ME, ["read", "write", "admin"])
    keys.revoke(revoked.record.id)
    their_job = app.submit("probe.noop", tenant=THEM, hold=True, tags=["secret"]).id
    app.schedules.add("their-nightly", "probe.noop", "0 3 * * *", tenant=THEM)
    others = {
        "batch_id": str(app.batches.submit([SubmitRequest("probe.noop", hold=True)],
                                           tenant=THEM).id),
        "sub_id": str(app.webhooks.subscribe("https://hooks.example.com/s", ["job.failed"],
                                             THEM).id),
    }
    their_workflow = app.workflow("their-flow")
    their_workflow.add("probe.noop", name="only")
    others["workflow_id"] = str(their_workflow.submit(tenant=THEM).id)
    app.submit("probe.noop", tenant=THEM, hold=True,
               callback_url="https://hooks.example.com/c").cancel()
    others["delivery_id"] = str(app.webhooks.deliveries(THEM)[0].id)
    my_job = app.submit("probe.noop", tenant=ME, hold=True, tags=["a_c"]).id
    app.submit("probe.noop", tenant=ME, hold=True, tags=["abc"])
    api = create_app(app)
    with serve(api) as url:
        yield World(url, app, api, keys.create(ME, ["read", "write", "admin"]).secret,
                    keys.create(ME, ["read"]).secret, revoked.secret, their_job,
                    "their-nightly", my_job, others)


def fingerprint(app: Crisper) -> tuple[Any, ...]:
    """Everything a request could change: jobs, schedules, queue pauses."""
    with app.store.read() as s:
        return (
            sorted(map(tuple, s.execute(select(
                jobs.c.id, jobs.c.state, jobs.c.queue, jobs.c.tenant, jobs.c.attempt,
                jobs.c.cancel_requested_at)).all()), key=str),
            sorted(map(tuple, s.execute(select(
                schedules.c.name, schedules.c.tenant, schedules.c.enabled, schedules.c.queue,
                schedules.c.updated_at)).all()), key=str),
            sorted(map(tuple, s.execute(select(queues)).all()), key=str),
            sorted(map(tuple, s.execute(select(deliveries.c.id, deliveries.c.state,
                                               deliveries.c.next_at)).all()), key=str),
            sorted(map(tuple, s.execute(select(subscriptions.c.id)).all()), key=str),
            sorted(map(tuple, s.execute(select(batches)).all()), key=str),
        )
