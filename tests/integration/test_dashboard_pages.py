"""The job page over HTTP: what it shows and where its live stream resumes must agree."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

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
