"""Dashboard security in a real browser: read-only keys, CSRF, session cookie, escaping."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update

from crisper.errors import InvalidRequest
from crisper.states import JobState
from crisper.store.models import jobs
from tests.e2e.conftest import TENANT, Site

pytestmark = [pytest.mark.backends("postgres-redis"), pytest.mark.slow]
SCRIPT = "<script>window.__xss=1</script>"
IMG = '<img src=x onerror="window.__xss=2">'


def csrf_of(page: Any) -> str:
    """The session's CSRF token, as every page carries it (the logout form)."""
    token: str = page.locator("form[action$='/logout'] input[name=csrf]").get_attribute("value")
    return token


def post(page: Any, url: str, form: dict[str, str]) -> int:
    """A POST from the page's own browser context (its session cookie), as a forger would."""
    status: int = page.request.post(url, form=form, max_redirects=0).status
    return status


def test_a_read_only_key_sees_no_actions_and_its_forged_posts_are_refused(site: Site) -> None:
    # Given a held job, a failed-looking queue of work, and a user with a read-only key
    app = site.backend.app
    held = app.submit("probe.noop", {}, tenant=TENANT, hold=True)
    page = site.page(site.key("read"))

    # Then no page offers an action
    page.goto(f"{site.url}/jobs/{held.id}")
    assert page.locator("[data-role=state]").first.inner_text() == "held"
    assert page.locator("button[data-action]").count() == 0
    page.goto(f"{site.url}/jobs")
    assert page.locator("tr[data-job-id]").count() == 1
    assert page.locator("input[name=ids], button[data-bulk]").count() == 0
    page.goto(f"{site.url}/submit?type=probe.noop")
    assert page.locator("form.stack").count() == 0
    page.goto(f"{site.url}/queues")
    assert page.locator("button.btn-pause").count() == 0

    # When the user forges the POSTs with the session's own valid CSRF token
    token = csrf_of(page)
    refused = {
        "start": post(page, f"{site.url}/jobs/{held.id}/start", {"csrf": token}),
        "cancel": post(page, f"{site.url}/jobs/{held.id}/cancel", {"csrf": token}),
        "bulk": post(page, f"{site.url}/jobs/bulk",
                     {"csrf": token, "action": "cancel", "ids": str(held.id)}),
        "submit": post(page, f"{site.url}/submit", {"csrf": token, "type": "probe.noop"}),
        "pause": post(page, f"{site.url}/queues/default/pause", {"csrf": token}),
    }

    # Then the server refuses every one, and nothing changed
    assert refused == dict.fromkeys(refused, 403)
    assert app.jobs.get(held.id).state is JobState.HELD
    assert len(app.jobs.list_jobs(_tenant(), limit=10)) == 1
    assert not any(q.paused for q in app.queues.list_queues())


def _tenant() -> Any:
    from crisper.store.jobs import JobFilter

    return JobFilter(tenant=TENANT)


def test_every_state_changing_request_needs_the_session_csrf_token(site: Site) -> None:
    # Given an admin logged in, and a held job
    app = site.backend.app
    held = app.submit("probe.noop", {}, tenant=TENANT, hold=True)
    page = site.page(site.key())

    # Then the session cookie is HttpOnly and SameSite, and not readable by scripts
    cookie = next(c for c in page.context.cookies() if c["name"] == "crisper_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/dashboard"
    assert "crisper_session" not in page.evaluate("document.cookie")

    # When a POST comes without the token, or with a wrong one
    start = f"{site.url}/jobs/{held.id}/start"
    assert post(page, start, {}) == 403
    assert post(page, start, {"csrf": "x" * 43}) == 403
    assert post(page, f"{site.url}/queues/default/pause", {}) == 403
    assert post(page, f"{site.url}/logout", {}) == 403

    # Then nothing changed; with the page's token the same request goes through
    assert app.jobs.get(held.id).state is JobState.HELD
    assert post(page, start, {"csrf": csrf_of(page)}) == 303
    assert app.jobs.get(held.id).state is JobState.QUEUED

    # And the login form is guarded too, and a browser without a session is sent to log in
    fresh = site.page()
    assert post(fresh, f"{site.url}/login", {"key": site.key()}) == 403
    fresh.goto(f"{site.url}/jobs")
    assert fresh.url == f"{site.url}/login"

    # And after logging out, the old page's token and cookie no longer act
    token = csrf_of(page)
    page.click("form[action$='/logout'] button")
    page.wait_for_url(f"{site.url}/login")
    assert post(page, f"{site.url}/jobs/{held.id}/cancel", {"csrf": token}) == 401


def test_user_data_in_params_errors_and_logs_is_shown_as_text(site: Site) -> None:
    # Given jobs whose params, log line and error message carry script payloads
    site.backend.start_worker(concurrency=2)
    app = site.backend.app
    with pytest.raises(InvalidRequest):  # a tag cannot carry markup any more...
        app.submit("probe.echo", {"number": 1}, tenant=TENANT, tags=[SCRIPT])
    echoed = app.submit("probe.echo", {"number": 1, "text": SCRIPT}, tenant=TENANT)
    with app.store.transaction() as session:  # ...but a row stored before that rule may
        session.execute(update(jobs).where(jobs.c.id == echoed.id).values(tags=[SCRIPT]))
    broken = app.submit("probe.explode", {"message": IMG}, tenant=TENANT)
    echoed.wait(timeout=30)
    broken.wait(timeout=30)
    page = site.page(site.key())

    # When the user opens every page that shows them
    pages = [f"/jobs/{echoed.id}", f"/jobs/{broken.id}", "/jobs", "/failed", "/",
             f"/jobs?q={SCRIPT}"]
    for path in pages:
        page.goto(f"{site.url}{path}")
        page.wait_for_load_state("load")
        # Then no payload ran
        assert page.evaluate("typeof window.__xss") == "undefined", path

    # And the payloads are shown literally, as text
    page.goto(f"{site.url}/jobs/{echoed.id}")
    assert SCRIPT in page.locator("[data-role=params]").inner_text()
    assert SCRIPT in page.locator("[data-role=log]").inner_text()
    assert page.locator(".tag", has_text=SCRIPT).count() == 1
    page.goto(f"{site.url}/jobs/{broken.id}")
    assert IMG in page.locator("[data-role=error]").inner_text()
    assert IMG in page.locator(".traceback").inner_text()
    assert page.locator("main img").count() == 0
    page.goto(f"{site.url}/failed")
    assert IMG in page.locator("tr[data-group-type='probe.explode']").inner_text()
