"""The job page over HTTP: what it shows and where its live stream resumes must agree."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from crisper import SubmitRequest
from crisper.dashboard.session import SESSION_COOKIE, new_session
from crisper.states import JobState
from tests.api_support import api_server, key
from tests.harness import Backend

PAGE_STATE = re.compile(r'id="live"[^>]*data-state="(\w+)"')
STREAM_CURSOR = re.compile(r"/stream\?after=(\d+)-(\d+)")


@pytest.mark.parametrize("change", ["before_history_is_read", "after_history_is_read"])
def test_a_state_change_while_the_job_page_renders_is_shown_or_streamed(
        backend: Backend, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    # Given a held job whose history read is interleaved with a start of that job
    app = backend.app
    held = app.submit("probe.noop", {}, tenant="acme", hold=True)
    read_history = app.jobs.events

    def history_with_a_start(job_id: Any, tenant: str | None = None) -> Any:
        if change == "before_history_is_read":
            app.jobs.start(job_id, tenant)
        found = read_history(job_id, tenant)
        if change == "after_history_is_read":
            app.jobs.start(job_id, tenant)
        return found

    monkeypatch.setattr(app.jobs, "events", history_with_a_start)

    # When the job page is rendered
    with api_server(app) as root:
        cookies = {SESSION_COOKIE: new_session(key(app)).encode()}
        page = httpx.get(f"{root}/dashboard/jobs/{held.id}", cookies=cookies)
    assert page.status_code == 200, page.text[:500]
    shown = PAGE_STATE.search(page.text)
    cursor = STREAM_CURSOR.search(page.text)
    assert shown is not None and cursor is not None

    # Then the state shown, followed by the events the stream sends after its cursor,
    # ends in the job's real state (the page never stays behind a change it skipped)
    monkeypatch.undo()
    streamed = [e.to_state for e in app.jobs.events(held.id) if e.id > int(cursor.group(1))]
    assert app.jobs.get(held.id).state is JobState.QUEUED
    assert (streamed[-1] if streamed else shown.group(1)) == "queued", (shown.group(1), streamed)


JOB_ROW = re.compile(r'data-job-id="([0-9a-f-]{36})"')
PAGER = re.compile(r'<a href="[^"]*/jobs(\?[^"]*)"[^>]*>([^<]+)</a>')


def test_the_jobs_list_pages_older_and_newer_by_cursor(backend: Backend) -> None:
    # Given 105 jobs: two full pages of 50 and five more
    app = backend.app
    ids = [str(h.id) for h in app.submit_many(
        [SubmitRequest("probe.noop", {}, hold=True, tenant="acme") for _ in range(105)])]
    newest_first = sorted(ids, reverse=True)  # ids are time-ordered (to the millisecond)

    with api_server(app) as root, httpx.Client(
            base_url=f"{root}/dashboard",
            cookies={SESSION_COOKIE: new_session(key(app)).encode()}) as browser:

        def page(link: str) -> tuple[list[str], dict[str, str]]:
            html = browser.get(f"/jobs{link}").text
            links = {text.strip(): href.replace("&amp;", "&") for href, text in PAGER.findall(html)}
            return JOB_ROW.findall(html), links

        # When they walk older to the end, then newer back to the start
        first, links = page("")
        second, links2 = page(links["Older →"])
        third, links3 = page(links2["Older →"])
        back, links4 = page(links3["← Newer"])
        front, links5 = page(links4["← Newer"])

    # Then each page holds the next 50 (then 5), and going back gives the same pages
    assert first == newest_first[:50] and "← Newer" not in links
    assert second == newest_first[50:100] and {"⇤ Newest", "← Newer", "Older →"} <= set(links2)
    assert third == newest_first[100:] and "Older →" not in links3
    assert back == second and front == first
    assert "← Newer" not in links5 and "Older →" in links5
