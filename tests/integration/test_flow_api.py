"""Schedules and queue pause over HTTP: CRUD with next fire times, run-now, pause/resume."""

from __future__ import annotations

import httpx
import pytest

from tests.api_support import api_server, key
from tests.harness import Backend

pytestmark = pytest.mark.backends("postgres-redis")


def test_schedules_and_queue_pause_over_http(backend: Backend) -> None:
    with api_server(backend.app) as url:
        http = httpx.Client(base_url=url, timeout=30,
                            headers={"Authorization": f"Bearer {key(backend.app)}"})
        # Create (PUT), read with next fire times, change, run now, disable, delete
        body = {"type": "probe.echo", "cron": "*/10 * * * *", "params": {"number": 1},
                "timezone": "Europe/Riga", "overlap": "skip"}
        created = http.put("/v1/schedules/report", json=body)
        assert created.status_code == 201, created.text
        assert len(created.json()["next_fires"]) == 5
        assert http.get("/v1/schedules").json()[0]["name"] == "report"
        bad = http.put("/v1/schedules/bad", json={**body, "cron": "61 * * * *"})
        assert bad.status_code == 422 and "cron" in bad.text
        job = http.post("/v1/schedules/report/run-now")
        assert job.status_code == 202
        assert backend.app.jobs.get(job.json()["id"]).schedule_name == "report"
        off = http.post("/v1/schedules/report/disable").json()
        assert off["enabled"] is False and off["next_fires"] == []
        assert http.delete("/v1/schedules/report").status_code == 204
        assert http.get("/v1/schedules/report").status_code == 404

        # Pause and resume a queue
        paused = http.post("/v1/queues/default/pause").json()
        assert paused["paused"] is True and backend.app.queues.get("default").paused
        assert http.post("/v1/queues/default/resume").json()["paused"] is False
        http.close()


def test_unique_jobs_over_http_return_the_active_one_or_conflict(backend: Backend) -> None:
    with api_server(backend.app) as url:
        http = httpx.Client(base_url=url, timeout=30,
                            headers={"Authorization": f"Bearer {key(backend.app)}"})
        body = {"type": "probe.noop", "hold": True, "unique_key": "nightly-report"}

        first = http.post("/v1/jobs", json=body)
        again = http.post("/v1/jobs", json=body)
        refused = http.post("/v1/jobs", json={**body, "on_duplicate": "reject"})

        assert first.status_code == 202, first.text
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
        assert refused.status_code == 409
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["job_id"] == first.json()["id"]
        assert "nightly-report" in refused.json()["detail"]
        http.close()
