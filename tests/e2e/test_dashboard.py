"""The dashboard in a real browser: submit from the form, watch progress, cancel, retry, bulk.

A real API server, a real worker and scheduler on PostgreSQL + Redis, and Debian's Chromium.
Set CRISPER_SCREENSHOTS=docs/screenshots to refresh the screenshots the docs show.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Error as PlaywrightError

from crisper.states import JobState
from tests.e2e.conftest import TENANT, Site
from tests.harness import wait_for

pytestmark = [pytest.mark.backends("postgres-redis"), pytest.mark.slow]
JOB_URL = re.compile(r".*/dashboard/jobs/([0-9a-f-]{36})\?done=(\w+)$")


def read_live(page: Any) -> tuple[str, float | None] | None:
    """The job page's state and progress bar value, or None while the page reloads."""
    try:
        return page.evaluate("""() => {
            const state = document.querySelector('#live [data-role=state]');
            const bar = document.querySelector('#live [data-role=bar]');
            if (!state || !bar) return null;
            return [state.textContent, bar.hasAttribute('value') ? bar.value : null];
        }""")
    except PlaywrightError:
        return None


def state_on_page(page: Any) -> str | None:
    found = read_live(page)
    return found[0] if found else None


def rendered_final(page: Any) -> bool:
    """Whether the job page was served in a final state: the reload a state change schedules
    has happened, and no other is coming (a navigation meanwhile would be aborted by it)."""
    try:
        return bool(page.evaluate(
            "() => document.querySelector('#live')?.dataset.terminal === 'true'"))
    except PlaywrightError:
        return False


def submit_via_service(site: Site, type: str, **params: Any) -> Any:
    return site.backend.app.submit(type, params, tenant=TENANT)


def test_submit_from_the_form_and_watch_the_progress_bar_reach_done(
        site: Site, screenshots: Path) -> None:
    # Given a worker, a scheduler, and an admin logged in to the dashboard
    site.backend.start_worker(concurrency=2)
    site.backend.start_scheduler()
    secret = site.key()
    page = site.page(secret)

    # When they submit probe.steps with a value that is not an integer
    page.goto(f"{site.url}/submit?type=probe.steps")
    page.fill("[name='param.steps']", "many")
    page.fill("[name=priority]", "300")
    page.click("form.stack button[type=submit]")

    # Then each field shows the message the HTTP API gives for the same input
    api_messages = {}
    for body in ({"params": {"steps": "many"}}, {"priority": 300}):
        api = httpx.post(f"{site.root}/v1/jobs", headers={"Authorization": f"Bearer {secret}"},
                         json={"type": "probe.steps", **body})
        assert api.status_code == 422
        api_messages.update({e["loc"][-1]: e["msg"] for e in api.json()["errors"]})
    steps_error = page.locator(".field-error[data-field=steps]").inner_text()
    assert steps_error == api_messages["steps"]
    assert page.locator(".field-error[data-field=priority]").inner_text() == \
        api_messages["priority"]
    page.screenshot(path=str(screenshots / "submit.png"), full_page=True)

    # When they correct the form and submit
    page.fill("[name='param.steps']", "6")
    page.fill("[name='param.seconds']", "0.6")
    page.fill("[name=priority]", "")
    page.fill("[name=tags]", "e2e, browser")
    page.click("form.stack button[type=submit]")
    page.wait_for_url(JOB_URL)
    match = JOB_URL.match(page.url)
    assert match is not None
    job_id = match.group(1)

    # Then its progress bar moves, without a click, until the job is done
    seen: list[float] = []

    def finished() -> bool:
        found = read_live(page)
        if found is None:
            return False
        state, value = found
        if value is not None:
            seen.append(value)
        return state == "succeeded"

    wait_for(finished, 60, "the job page to show the job succeeded", every=0.1)
    assert any(0 < v < 100 for v in seen), f"no partial progress seen: {sorted(set(seen))}"
    page.wait_for_function("document.querySelector('#live [data-role=bar]').value === 100")
    assert page.locator("[data-role=result]").inner_text().replace(" ", "").find(
        '"steps":6') >= 0
    assert page.locator("[data-role=log] li").count() == 6
    record = site.backend.app.jobs.get(job_id)
    assert record.state is JobState.SUCCEEDED and record.tags == ["e2e", "browser"]
    page.screenshot(path=str(screenshots / "job.png"), full_page=True)

    # And the jobs list follows a running job live, without reloading the page
    moving = submit_via_service(site, "probe.steps", steps=5, seconds=0.5)
    for _ in range(3):
        submit_via_service(site, "probe.explode", message="disk /var is full")
    submit_via_service(site, "probe.explode", message="upstream answered 502")
    page.goto(f"{site.url}/jobs")
    page.evaluate("window.__same_page = true")
    row = page.locator(f"tr[data-job-id='{moving.id}']")
    row.locator("[data-role=state]:text('succeeded')").wait_for(timeout=30_000)
    assert row.locator("[data-role=bar]").evaluate("b => b.value") == 100
    assert page.evaluate("window.__same_page") is True
    page.screenshot(path=str(screenshots / "jobs.png"), full_page=True)

    # And the other pages show the figures (screenshots for the docs)
    wait_for(lambda: all(site.backend.app.jobs.get(j.id).state.is_terminal
                         for j in site.backend.app.jobs.list_jobs(_all(), limit=50)),
             30, "every job to finish")
    page.goto(f"{site.url}/failed")
    group = page.locator("tr[data-group-type='probe.explode']", has_text="disk /var is full")
    assert group.locator("td.num").inner_text() == "3"
    page.screenshot(path=str(screenshots / "failed.png"), full_page=True)
    page.goto(f"{site.url}/queues")
    assert page.locator("tr[data-worker] .state-succeeded").count() >= 1  # alive
    page.screenshot(path=str(screenshots / "queues.png"), full_page=True)
    page.goto(f"{site.url}/")
    assert page.locator("[data-role=workers-online]").inner_text() == "1"
    assert page.locator("svg.chart rect.bar-ok").count() >= 1
    assert page.locator("svg.chart rect.bar-bad").count() >= 1
    page.screenshot(path=str(screenshots / "overview.png"), full_page=True)

    # And on a phone-width window nothing overflows sideways
    phone = site.page(secret, width=390, height=844)
    for path in ("/", "/jobs", f"/jobs/{job_id}", "/submit?type=probe.steps", "/queues"):
        phone.goto(f"{site.url}{path}")
        assert phone.evaluate("document.documentElement.scrollWidth") <= 391, path
    phone.goto(f"{site.url}/jobs")
    phone.screenshot(path=str(screenshots / "jobs-phone.png"), full_page=True)


def _all() -> Any:
    from crisper.store.jobs import JobFilter

    return JobFilter(tenant=TENANT)


def test_cancel_a_running_job_retry_a_failed_one_and_act_in_bulk(site: Site) -> None:
    # Given a worker and an admin on the page of a long job
    site.backend.start_worker(concurrency=2)
    site.backend.start_scheduler()
    jobs = site.backend.app.jobs
    page = site.page(site.key())
    long = submit_via_service(site, "probe.steps", steps=100, seconds=0.3)
    page.goto(f"{site.url}/jobs/{long.id}")
    wait_for(lambda: state_on_page(page) == "running", 30, "the job page to show running")

    # When they press Cancel and confirm
    page.click("button[data-action=cancel]")

    # Then the running job stops and the page shows it cancelled
    wait_for(lambda: state_on_page(page) == "cancelled", 30, "the page to show cancelled")
    wait_for(lambda: rendered_final(page), 30, "the page to reload in its final state")
    assert jobs.get(long.id).state is JobState.CANCELLED
    assert jobs.get(long.id).progress_current != 100

    # Given a failed job
    failed = submit_via_service(site, "probe.explode", message="try me again")
    failed.wait(timeout=30)
    assert jobs.get(failed.id).state is JobState.FAILED

    # When they press Retry on its page
    page.goto(f"{site.url}/jobs/{failed.id}")
    page.click("button[data-action=retry]")
    page.wait_for_url(JOB_URL)

    # Then it runs again: a second attempt shows up in its history
    wait_for(lambda: len([e for e in jobs.events(failed.id) if e.to_state == "running"]) == 2,
             30, "the retried job to run a second time")
    assert any(e.reason == "retried" for e in jobs.events(failed.id))
    wait_for(lambda: jobs.get(failed.id).state.is_terminal, 30, "the retry to finish")
    page.reload()
    assert page.locator("text=Attempts").count() == 1
    assert page.locator("section.card:has(h2:text('Attempts')) tbody tr").count() == 2

    # Given three held jobs
    held = [site.backend.app.submit("probe.noop", {}, tenant=TENANT, hold=True)
            for _ in range(3)]

    # When they select them all on the filtered list and cancel them in bulk
    page.goto(f"{site.url}/jobs?state=held")
    assert page.locator("tr[data-job-id]").count() == 3
    page.check("[data-role=select-all]")
    page.click("button[data-bulk][value=cancel]")

    # Then all three are cancelled, and the page says so, keeping the filter
    page.locator(".notice", has_text="3 changed").wait_for()
    assert "state=held" in page.url
    assert all(jobs.get(h.id).state is JobState.CANCELLED for h in held)

    # When they retry the cancelled ones in bulk
    page.goto(f"{site.url}/jobs?state=cancelled&type=probe.noop")
    page.check("[data-role=select-all]")
    page.click("button[data-bulk][value=retry]")
    page.locator(".notice", has_text="3 changed").wait_for()

    # Then they run to success
    wait_for(lambda: all(jobs.get(h.id).state is JobState.SUCCEEDED for h in held), 30,
             "the retried jobs to succeed")

    # Given two failed jobs with the same error
    twins = [submit_via_service(site, "probe.explode", message="same cause") for _ in range(2)]
    for t in twins:
        t.wait(timeout=30)

    # When they retry their group from the failed page
    page.goto(f"{site.url}/failed")
    group = page.locator("tr[data-group-type='probe.explode']", has_text="same cause")
    group.locator("button", has_text="Retry 2").click()

    # Then both run again
    page.locator(".notice", has_text="Retried 2 jobs").wait_for()
    wait_for(lambda: all(len([e for e in jobs.events(t.id) if e.reason == "retried"]) == 1
                         for t in twins), 10, "both jobs of the group to be retried")
