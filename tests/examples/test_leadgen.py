"""The lead-generation example end to end: its HTTP API, a real worker and scheduler, and the
write-up's limits and retries scaled down through its configuration."""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from leadgen import api as leadgen_api
from leadgen import jobs as leadgen
from sqlalchemy import func, select

from crisper import Crisper
from tests.api_support import serve
from tests.examples.conftest import EXAMPLES
from tests.harness import ROOT, Backend, wait_for

pytestmark = pytest.mark.backends("postgres-redis")
COMPANIES = Path(leadgen.__file__).with_name("companies.csv")


@contextmanager
def running(backend: Backend, **config: str) -> Iterator[tuple[Crisper, httpx.Client]]:
    """The example as deployed: its API here, a worker on its queue and a scheduler, all
    given the same LEADGEN_* configuration."""
    env = {"CRISPER_APP": "leadgen.jobs", "PYTHONPATH": f"{ROOT}:{EXAMPLES}", **config}
    names = {"LEADGEN_SOFT_LIMIT": "soft_limit", "LEADGEN_HARD_LIMIT": "hard_limit",
             "LEADGEN_RETRY_DELAY": "retry_delay", "LEADGEN_CANCEL_GRACE": "cancel_grace"}
    settings = replace(leadgen.Config(), **{names[k]: v for k, v in config.items() if k in names})
    app = leadgen.build(backend.settings, settings)
    with serve(leadgen_api.create_api(app)) as url, httpx.Client(base_url=url,
                                                                 timeout=30) as client:
        backend.start_scheduler(**env)
        backend.start_worker(concurrency=2, extra=["-Q", "campaigns"], **env)
        try:
            yield app, client
        finally:
            app.store.close()


def expected(sector: str | None, min_employees: int) -> tuple[int, int]:
    """(companies scanned, leads) the shipped CSV gives a search, computed from the file."""
    with COMPANIES.open() as f:
        rows = [r for r in csv.DictReader(f) if sector is None or r["sector"] == sector]
    return len(rows), sum(int(r["employees"]) >= min_employees for r in rows)


def until(client: httpx.Client, cid: str, status: str, timeout: float = 90) -> dict[str, Any]:
    def seen() -> dict[str, Any] | None:
        got: dict[str, Any] = client.get(f"/campaigns/{cid}").json()
        return got if got["status"] == status else None
    return wait_for(seen, timeout, f"campaign {cid} to be {status}", every=0.2)  # type: ignore[no-any-return]


@pytest.mark.timeout(240)
def test_a_campaign_runs_from_draft_to_completed_and_restarts_from_zero(
        backend: Backend) -> None:
    with running(backend, LEADGEN_SECONDS_PER_COMPANY="0.2") as (app, client):
        # Given a draft campaign for one sector
        made = client.post("/campaigns", json={"name": "Q3 software", "sector": "software",
                                               "min_employees": 25})
        assert made.status_code == 201 and made.json()["status"] == "draft"
        cid = made.json()["id"]
        assert client.post(f"/campaigns/{cid}/stop").status_code == 202  # a draft may be dropped
        other = client.post("/campaigns", json={"name": "unused"}).json()["id"]
        assert client.post(f"/campaigns/{other}/restart").status_code == 409  # not ended yet

        made = client.post("/campaigns", json={"name": "Q4 software", "sector": "software",
                                               "min_employees": 25}).json()
        cid = made["id"]
        # When it is started
        started = client.post(f"/campaigns/{cid}/start")
        assert started.status_code == 202 and started.json()["status"] in ("queued", "running")
        assert client.post(f"/campaigns/{cid}/start").status_code == 409

        # Then the live status list shows it running with its counters moving, then completed
        mid = until(client, cid, "running")
        listed = {c["id"]: c for c in client.get("/campaigns").json()}
        assert listed[cid]["status"] == "running" and listed[other]["status"] == "draft"
        scanned, found = expected("software", 25)
        done = until(client, cid, "completed")
        assert (done["companies_scanned"], done["leads_created"]) == (scanned, found)
        assert mid["companies_scanned"] <= scanned and done["progress"] == 100.0

        # When it is restarted, its statistics start from zero and it runs again to the same end
        again = client.post(f"/campaigns/{cid}/restart")
        assert again.status_code == 202 and again.json()["companies_scanned"] == 0
        assert again.json()["status"] in ("queued", "running")
        done = until(client, cid, "completed")
        assert (done["companies_scanned"], done["leads_created"]) == (scanned, found)
        assert done["attempt"] == 1
        with app.store.read() as s:
            kept = s.scalar(select(func.count()).select_from(leadgen.leads)
                            .where(leadgen.leads.c.campaign_id == made["id"]))
        assert kept == found  # no lead twice
        assert client.get("/campaigns/00000000-0000-0000-0000-000000000000").status_code == 404


@pytest.mark.timeout(240)
def test_stop_kills_a_running_campaign_that_never_checks_and_its_counters_stop(
        backend: Backend) -> None:
    with running(backend, LEADGEN_SECONDS_PER_COMPANY="0.5", LEADGEN_CANCEL_GRACE="2s"
                 ) as (app, client):
        # Given a running campaign over all 60 companies, a few scanned
        cid = client.post("/campaigns", json={"name": "all", "min_employees": 0}).json()["id"]
        client.post(f"/campaigns/{cid}/start")
        wait_for(lambda: client.get(f"/campaigns/{cid}").json()["companies_scanned"] >= 2, 90,
                 "a few companies scanned", every=0.2)

        # When it is stopped
        stopped = client.post(f"/campaigns/{cid}/stop")
        assert stopped.status_code == 202

        # Then it is cancelled after the grace period although its code never looks, and its
        # counters stop moving
        ended = until(client, cid, "cancelled", timeout=60)
        time.sleep(3)
        later = client.get(f"/campaigns/{cid}").json()
        assert later["companies_scanned"] == ended["companies_scanned"] < 60
        assert later["leads_created"] == ended["leads_created"]
        job = app.jobs.get(later["task_id"])
        assert "cancel_forced" in [e.reason for e in app.jobs.events(job.id)]
        assert client.post(f"/campaigns/{cid}/stop").status_code == 409


@pytest.mark.timeout(240)
def test_the_soft_limit_fails_a_campaign_without_a_retry(backend: Backend) -> None:
    with running(backend, LEADGEN_SECONDS_PER_COMPANY="0.5", LEADGEN_SOFT_LIMIT="2s",
                 LEADGEN_HARD_LIMIT="4s", LEADGEN_RETRY_DELAY="1s") as (app, client):
        # Given a campaign that would take 30 s, under a 2 s soft limit (the write-up's 1h55m)
        cid = client.post("/campaigns", json={"name": "slow", "min_employees": 0}).json()["id"]

        # When it runs
        client.post(f"/campaigns/{cid}/start")

        # Then the soft limit ends it as failed, on its first attempt: a timeout is not transient
        failed = until(client, cid, "failed", timeout=90)
        job = app.jobs.get(failed["task_id"])
        assert job.error is not None and job.error["type"] == "SoftTimeLimitExceeded"
        assert (failed["attempt"], failed["max_attempts"]) == (1, 4)
        assert 0 < failed["companies_scanned"] < 60
        assert (job.timeout, app.registry.get(leadgen.RUN).options.hard_timeout) == (2.0, 4.0)


@pytest.mark.timeout(240)
def test_transient_source_errors_are_retried_apart_and_bad_data_is_not(
        backend: Backend, tmp_path: Path) -> None:
    source = tmp_path / "companies.csv"  # missing at first: the share is not mounted yet
    with running(backend, LEADGEN_COMPANIES_CSV=str(source), LEADGEN_RETRY_DELAY="2s"
                 ) as (app, client):
        # Given a campaign started while its source cannot be read
        first = client.post("/campaigns", json={"name": "a", "min_employees": 0}).json()["id"]
        client.post(f"/campaigns/{first}/start")

        # When two attempts have failed, and the source then answers with data it cannot use
        wait_for(lambda: client.get(f"/campaigns/{first}").json()["attempt"] >= 2
                 and client.get(f"/campaigns/{first}").json()["status"] == "queued", 90,
                 "a second failed attempt")
        source.write_text("name,sector\nAcme,software\n")

        # Then that error is not retried: failed on attempt 3 of 4
        failed = until(client, first, "failed", timeout=60)
        assert failed["attempt"] == 3 and "missing column" in failed["error"]
        events = app.jobs.events(failed["task_id"])
        started = [e.at for e in events if e.to_state == "running"]
        gaps = [b - a for a, b in zip(started, started[1:], strict=False)]
        assert len(started) == 3 and all(g.total_seconds() >= 2.0 for g in gaps), gaps
        assert [e.reason for e in events if e.to_state == "retrying"] == ["error", "error"]

        # And once the source is whole, a campaign completes on its first attempt
        source.write_text(COMPANIES.read_text())
        second = client.post("/campaigns", json={"name": "b", "sector": "retail",
                                                 "min_employees": 0}).json()["id"]
        client.post(f"/campaigns/{second}/start")
        done = until(client, second, "completed")
        assert done["attempt"] == 1 and done["leads_created"] == expected("retail", 0)[1]
