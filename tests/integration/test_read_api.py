"""The in-process read API answers what the HTTP API answers, with the same filters and pages."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from crisper import JobState
from crisper.errors import InvalidRequest
from crisper.store import utcnow
from tests.api_support import api_server, key
from tests.harness import Backend, wait_for

S = JobState


def test_python_and_http_list_the_same_jobs_with_the_same_filters_and_pages(
        backend: Backend) -> None:
    # Given held echo jobs (some tagged, some cancelled), held noops and a delayed echo
    app = backend.app
    since = utcnow() - timedelta(seconds=1)
    echoes = [app.submit("probe.echo", {"number": i}, hold=True, tenant="acme",
                         tags=["vip"] if i % 2 else []) for i in range(7)]
    for job in echoes[:3]:
        app.jobs.cancel(job.id)
    app.submit("probe.noop", {}, hold=True, tenant="acme")
    app.submit("probe.echo", {"number": 99}, delay=3600, tenant="acme")
    app.submit("probe.echo", {"number": 100}, hold=True, tenant="other")

    # When Python pages through held echo jobs of acme, 2 at a time
    pages, cursor = [], None
    while True:
        page = app.list_jobs(state="held", type="probe.echo", tenant="acme", limit=2,
                             before=cursor)
        pages.append([j.id for j in page.items])
        cursor = page.next_cursor
        if cursor is None:
            break

    # Then it sees the four held ones, newest first, in pages of 2 (the last one empty or short)
    seen = [i for p in pages for i in p]
    assert seen == [j.id for j in reversed(echoes[3:])]
    assert [len(p) for p in pages] == [2, 2, 0]
    # And the HTTP API, calling the same function, pages identically
    with api_server(app) as url:
        http = httpx.Client(base_url=url, timeout=30,
                            headers={"Authorization": f"Bearer {key(app, tenant='acme')}"})
        over_http, before = [], None
        while True:
            params = {"state": "held", "type": "probe.echo", "limit": 2}
            if before:
                params["before"] = before
            body = http.get("/v1/jobs", params=params).json()
            over_http.append([j["id"] for j in body["items"]])
            before = body["next_cursor"]
            if before is None:
                break
        tagged = http.get("/v1/jobs", params={"tag": "vip", "limit": 50}).json()["items"]
        http.close()
    assert over_http == [[str(i) for i in p] for p in pages]
    # And the other filters agree too: tag, several states at once, time, queue
    assert {j["id"] for j in tagged} == {
        str(j.id) for j in app.list_jobs(tag="vip", tenant="acme").items}
    waiting = app.list_jobs(state=[S.HELD, S.SCHEDULED], tenant="acme", created_after=since)
    assert len(waiting.items) == 6 and waiting.next_cursor is None
    assert app.list_jobs(queue="nope", tenant="acme").items == []

    # And counts by state use the same filters, every state present
    counts = app.count_jobs(type="probe.echo", tenant="acme")
    assert counts[S.HELD] == 4 and counts[S.CANCELLED] == 3 and counts[S.SCHEDULED] == 1
    assert counts[S.SUCCEEDED] == 0 and set(counts) == set(JobState)
    assert sum(app.count_jobs(tag="vip").values()) == 3


def test_bad_read_arguments_are_refused_with_the_field_named(backend: Backend) -> None:
    with pytest.raises(InvalidRequest, match="state"):
        backend.app.list_jobs(state="done")
    with pytest.raises(InvalidRequest, match="limit"):
        backend.app.list_jobs(limit=501)


@pytest.mark.backends("postgres-redis")
def test_workers_and_queue_figures_are_read_in_process(backend: Backend) -> None:
    # Given a worker and a job waiting in a paused queue
    app = backend.app
    backend.start_worker(concurrency=1)
    app.queues.pause("default")
    app.submit("probe.noop", {})

    # When Python asks for the workers and the queues
    workers = wait_for(lambda: [w for w in app.list_workers() if w.status == "alive"], 30,
                       "the worker to be listed")
    queues = {q.name: q for q in app.queue_stats()}

    # Then the worker is there with its queues, and the default queue shows its waiting job
    assert workers[0].concurrency == 1 and "default" in workers[0].queues
    assert queues["default"].depth == 1 and queues["default"].running == 0
    app.queues.resume("default")
