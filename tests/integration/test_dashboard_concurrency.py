"""The dashboard shares the API's event loop: a slow dashboard action must not stall the API."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from crisper import SubmitRequest
from crisper.dashboard.session import SESSION_COOKIE, new_session
from crisper.states import JobState
from tests.api_support import api_server, key
from tests.harness import Backend, wait_for

pytestmark = pytest.mark.backends("postgres-redis")
JOBS = 500
PER_JOB_DELAY = 0.02  # on top of the real cancel: the bulk lasts 10 s or more
API_BOUND = 3.0  # seconds for one API read while the bulk runs (it would wait it out if blocked)


def test_a_slow_dashboard_bulk_cancel_does_not_delay_api_requests(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given 500 held jobs, and a cancel that is real but slowed down
    app = backend.app
    ids = [str(h.id) for h in app.submit_many(
        [SubmitRequest("probe.noop", {}, hold=True, tenant="acme") for _ in range(JOBS)])]
    real_cancel, cancelled = app.jobs.cancel, [0]

    def slow_cancel(job_id: Any, tenant: str | None = None) -> Any:
        time.sleep(PER_JOB_DELAY)
        record = real_cancel(job_id, tenant)
        cancelled[0] += 1
        return record

    monkeypatch.setattr(app.jobs, "cancel", slow_cancel)
    secret = key(app)
    session = new_session(secret)

    with api_server(app) as root:
        # When the dashboard bulk-cancels all of them
        answer: list[httpx.Response] = []

        def bulk() -> None:
            answer.append(httpx.post(
                f"{root}/dashboard/jobs/bulk", cookies={SESSION_COOKIE: session.encode()},
                data={"action": "cancel", "ids": ids, "csrf": session.csrf}, timeout=300))

        worker = threading.Thread(target=bulk, name="dashboard-bulk")
        worker.start()
        try:
            wait_for(lambda: cancelled[0] >= 10, 60, "the bulk cancel to be under way")
            # Then API reads made meanwhile answer promptly, while the bulk is still running
            latencies = []
            with httpx.Client(base_url=root, timeout=60,
                              headers={"Authorization": f"Bearer {secret}"}) as api:
                for job_id in ids[-5:]:
                    started = time.monotonic()
                    assert api.get(f"/v1/jobs/{job_id}").status_code == 200
                    latencies.append(time.monotonic() - started)
            still_running = cancelled[0] < JOBS
        finally:
            worker.join(300)
    assert max(latencies) < API_BOUND, f"API reads waited for the bulk: {latencies}"
    assert still_running, "the bulk ended before the API was measured; slow it down further"

    # And the bulk itself did all its work
    assert answer and answer[0].status_code == 303, answer
    assert f"changed={JOBS}" in answer[0].headers["location"]
    assert app.jobs.get(ids[0]).state is JobState.CANCELLED
