"""The dashboard's batch pages and the deliveries shown on a job's page, acted on as a user."""

from __future__ import annotations

import re

import httpx
import pytest

from crisper.batches import Callback
from crisper.dashboard.session import SESSION_COOKIE, new_session
from crisper.maintenance.deliverer import Deliverer
from crisper.service import SubmitRequest
from crisper.store import utcnow
from tests.api_support import api_server, key
from tests.harness import Backend, wait_for
from tests.receiver import Plan, receiver


@pytest.mark.backends("postgres-redis")
def test_batch_page_shows_counters_jobs_and_deliveries_and_acts_on_the_batch(
        backend: Backend) -> None:
    app = backend.app_with(outbound_allow=["127.0.0.1/32"], webhook_backoff_seconds=0.1)
    with receiver(Plan(fail=1)) as r, api_server(app) as root:
        # Given a batch of two held jobs (tenant acme) with a completion webhook
        batch = app.batches.submit([SubmitRequest("probe.noop", hold=True)] * 2, tenant="acme",
                                   description="pictures", callbacks={
                                       "complete": Callback(url=r.url + "/done")})
        session = new_session(key(app, "acme"))
        cookies = {SESSION_COOKIE: session.encode()}
        listing = httpx.get(f"{root}/dashboard/batches", cookies=cookies)
        assert listing.status_code == 200 and str(batch.id) in listing.text
        # When the user cancels the whole batch from its page
        done = httpx.post(f"{root}/dashboard/batches/{batch.id}/cancel", cookies=cookies,
                          data={"csrf": session.csrf}, follow_redirects=True)
        assert done.status_code == 200, done.text[:300]
        # Then the counters show it, and the completion delivery is listed
        assert re.search(r'data-count="cancelled">2<', done.text)
        assert re.search(r'data-count="pending">0<', done.text)
        assert "batch.complete" in done.text and "pending" in done.text
        deliverer = Deliverer(app.store, app.settings, app.jobs)
        wait_for(lambda: (deliverer(utcnow()), r.plan.served >= 2)[1], 30, "the delivery")
        deliverer.close()
        page = httpx.get(f"{root}/dashboard/batches/{batch.id}", cookies=cookies).text
        assert "delivered" in page and "Redeliver" in page
        # And another tenant's session finds no such batch
        other = {SESSION_COOKIE: new_session(key(app, "other")).encode()}
        assert httpx.get(f"{root}/dashboard/batches/{batch.id}",
                         cookies=other).status_code == 404


@pytest.mark.backends("postgres-redis")
def test_job_page_lists_its_deliveries_with_redelivery(backend: Backend) -> None:
    app = backend.app_with(outbound_allow=["127.0.0.1/32"])
    with receiver() as r, api_server(app) as root:
        job = app.submit("probe.noop", tenant="acme", hold=True, callback_url=r.url + "/cb")
        job.cancel()
        session = new_session(key(app, "acme"))
        cookies = {SESSION_COOKIE: session.encode()}
        page = httpx.get(f"{root}/dashboard/jobs/{job.id}", cookies=cookies).text
        assert "Webhook deliveries" in page and "job.callback" in page and r.url in page
        delivery = app.webhooks.deliveries("acme", job_id=job.id)[0]
        answer = httpx.post(f"{root}/dashboard/deliveries/{delivery.id}/redeliver",
                            cookies=cookies, data={"csrf": session.csrf})
        assert answer.status_code == 303
        assert answer.headers["location"].endswith(f"/jobs/{job.id}?done=redeliver")
