"""The dashboard's jobs list filters by tag and metadata; its queues page shows the limits."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from crisper import Crisper, SubmitRequest
from crisper.dashboard.session import SESSION_COOKIE, new_session
from tests.api_support import api_server, key
from tests.apps import shared
from tests.harness import Backend, wait_for

JOB_ROW = re.compile(r'data-job-id="([0-9a-f-]{36})"')
LIMIT_ROW = re.compile(r'<tr data-limit="([^"]+)" data-kind="(\w+)">(.*?)</tr>', re.S)
CELL = re.compile(r'data-role="(tokens|running|deferred)">(.*?)</td>', re.S)


def browser(app: Crisper, root: str, tenant: str = "acme") -> httpx.Client:
    return httpx.Client(base_url=f"{root}/dashboard", timeout=30, cookies={
        SESSION_COOKIE: new_session(key(app, tenant=tenant)).encode()})


def test_the_jobs_list_filters_by_exact_tag_and_metadata(backend: Backend) -> None:
    # Given jobs of one tenant with tags and metadata, one whose value holds LIKE wildcards
    app = backend.app
    hit = app.submit("probe.noop", hold=True, tenant="acme", tags=["vip"],
                     metadata={"customer": "acme", "region": "eu"})
    us = app.submit("probe.noop", hold=True, tenant="acme", tags=["vip"],
                    metadata={"customer": "acme", "region": "us"})
    wild = app.submit("probe.noop", hold=True, tenant="acme", metadata={"customer": "a%_e"})
    app.submit("probe.noop", hold=True, tenant="acme", metadata={"customer": "acme"})
    app.submit("probe.noop", hold=True, tenant="other", tags=["vip"],
               metadata={"customer": "acme", "region": "eu"})

    with api_server(app) as root, browser(app, root) as web:
        # When the list is filtered by tag, by tag and two pairs, and by a wildcard-like value
        by_tag = JOB_ROW.findall(web.get("/jobs", params={"tag": "vip"}).text)
        both = web.get("/jobs", params=[("tag", "vip"), ("meta", "customer:acme"),
                                        ("meta", "region:eu")])
        pattern = JOB_ROW.findall(web.get("/jobs", params={"meta": "customer:a%_e"}).text)
        near = JOB_ROW.findall(web.get("/jobs", params={"meta": "customer:acm"}).text)
        bad = web.get("/jobs", params={"meta": "no separator"})

    # Then each match is exact, within the tenant, and the form keeps the pairs it filtered by
    assert set(by_tag) == {str(hit.id), str(us.id)}
    assert JOB_ROW.findall(both.text) == [str(hit.id)]
    assert 'value="customer:acme"' in both.text and 'value="region:eu"' in both.text
    assert pattern == [str(wild.id)] and near == []
    # And a pair the filter cannot take is said, not silently dropped
    assert bad.status_code == 422 and "key:value" in bad.text and not JOB_ROW.findall(bad.text)


def test_bulk_actions_come_back_to_the_same_metadata_filter(backend: Backend) -> None:
    # Given two held jobs of one customer and one of another
    app = backend.app
    mine = [app.submit("probe.noop", hold=True, tenant="acme", metadata={"customer": "acme"})
            for _ in range(2)]
    app.submit("probe.noop", hold=True, tenant="acme", metadata={"customer": "zeta"})

    with api_server(app) as root, browser(app, root) as web:
        page = web.get("/jobs", params={"meta": "customer:acme"}).text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        back = re.search(r'name="back" value="([^"]*)"', page)
        assert csrf and back
        # When the listed jobs are cancelled from that page
        done = web.post("/jobs/bulk", data={"csrf": csrf.group(1), "action": "cancel",
                                            "ids": [str(j.id) for j in mine],
                                            "back": back.group(1).replace("&amp;", "&")})

    # Then the answer lists the same filter again, with the counts
    assert done.status_code == 303
    assert "meta=customer%3Aacme" in done.headers["location"]
    assert "changed=2" in done.headers["location"]


@pytest.fixture
def shared_app(backend: Backend) -> Iterator[Crisper]:
    crisper = shared.build(backend.settings)
    yield crisper
    crisper.store.close()


def limit_rows(html: str) -> dict[str, dict[str, str]]:
    rows = {}
    for name, kind, body in LIMIT_ROW.findall(html):
        cells = {role: re.sub(r"<[^>]+>", "", text).strip() for role, text in CELL.findall(body)}
        rows[name] = {"kind": kind, **cells}
    return rows


@pytest.mark.timeout(180)
@pytest.mark.backends("postgres-redis")
def test_the_queues_page_shows_each_limits_tokens_running_and_deferred(
        backend: Backend, shared_app: Crisper) -> None:
    # Given an app with a shared rate limit (10 per 2 s, burst 2), a keyed one, and a shared
    # concurrency limit of 2, and six 4-second jobs on it with four worker slots
    app = shared_app
    backend.start_worker(concurrency=4, CRISPER_APP="tests.apps.shared")
    app.submit_many([SubmitRequest(t, {"seconds": 4.0}) for t in ("shared.render",
                                                                 "shared.train") * 3])

    with api_server(app) as root, browser(app, root, tenant="default") as web:
        # When an admin opens the queues page while they run
        def gpu_busy() -> dict[str, dict[str, str]] | None:
            rows = limit_rows(web.get("/queues").text)
            gpu = rows.get("gpu", {})
            return rows if gpu.get("running") == "2" and int(gpu["deferred"]) >= 1 else None

        rows = wait_for(gpu_busy, 90, "the page to show two running and some deferred", 0.3)
        api = {s["name"]: s for s in httpx.get(
            f"{root}/v1/limits", headers={"Authorization": f"Bearer {key(app)}"},
            timeout=30).json()}

    # Then every limit the API lists is on the page, shared ones once, with the same figures
    # where they do not move (the idle mail bucket has its burst of 2 tokens; a keyed limit
    # has no single bucket to read)
    assert set(rows) == set(api) == {"mail", "hosts", "gpu"}
    assert rows["mail"] == {"kind": "rate", "tokens": "2", "running": "–", "deferred": "0"}
    assert api["mail"]["tokens"] == 2 and api["hosts"]["tokens"] is None
    assert rows["hosts"]["tokens"] == "–" and rows["gpu"]["kind"] == "concurrency"
    assert api["gpu"]["running"] <= 2
