"""Crisper inside a team's FastAPI app (tests/apps/webshop.py) on PostgreSQL: a request's
job exists if and only if its transaction commits, with a Session or an AsyncSession; the
API and dashboard are mounted under the app's prefix with their own key auth."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import func, select

from crisper import Crisper, JobState
from crisper.keys import KeyService
from crisper.store.models import jobs
from tests.api_support import serve
from tests.apps import webshop
from tests.harness import Backend

S = JobState
pytestmark = pytest.mark.backends("postgres-redis")


@pytest.fixture
def shop(backend: Backend) -> Iterator[tuple[Crisper, httpx.Client]]:
    """The team's app served by uvicorn, with a client to call it."""
    crisper = webshop.build(backend.settings)
    web = webshop.create_web_app(crisper, backend.env["CRISPER_DATABASE_URL"])
    with serve(web) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield crisper, client
    web.state.engines[0].dispose()
    crisper.store.close()


def job_count(crisper: Crisper) -> int:
    with crisper.store.read() as session:
        return int(session.execute(select(func.count()).select_from(jobs)).scalar_one())


def order_count(crisper: Crisper) -> int:
    with crisper.store.read() as session:
        return int(session.execute(select(func.count()).select_from(webshop.orders))
                   .scalar_one())


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_requests_job_exists_if_and_only_if_its_transaction_commits(
        backend: Backend, shop: tuple[Crisper, httpx.Client], kind: str) -> None:
    crisper, client = shop

    # When a request submits and then fails, and another commits
    failed = client.post(f"/{kind}/orders", params={"item": "kettle", "fail": True})
    ok = client.post(f"/{kind}/orders", params={"item": "teapot"})

    # Then the failed request left neither its order nor its job; the other left one of each
    assert failed.status_code == 409, failed.text
    assert ok.status_code == 200, ok.text
    assert (order_count(crisper), job_count(crisper)) == (1, 1)
    job = crisper.get(ok.json()["job"])
    assert job.state is S.QUEUED

    # And that one job runs on a worker
    backend.start_worker(concurrency=1, CRISPER_APP="tests.apps.webshop")
    assert job.wait(timeout=30).state is S.SUCCEEDED
    assert job.result["shipped"] >= 1


def test_crispers_api_and_dashboard_live_under_the_apps_prefix_with_their_own_auth(
        shop: tuple[Crisper, httpx.Client]) -> None:
    crisper, client = shop
    job_id = client.post("/sync/orders", params={"item": "cup"}).json()["job"]
    key = KeyService(crisper.store).create("default", ["read"]).secret

    anonymous = client.get(f"/jobs/v1/jobs/{job_id}")
    with_key = client.get(f"/jobs/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"})
    dashboard = client.get("/jobs/dashboard/login")
    root = client.get("/jobs/")

    assert anonymous.status_code == 401  # Crisper's key auth still guards its routes
    assert with_key.status_code == 200 and with_key.json()["id"] == job_id
    assert dashboard.status_code == 200 and 'action="/jobs/dashboard/login"' in dashboard.text
    assert root.status_code == 307 and root.headers["location"] == "/jobs/dashboard/"
    assert with_key.headers["x-team"] == "yes"  # the team's middleware ran as before
