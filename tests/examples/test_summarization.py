"""The summarization example end to end: its HTTP API here; a real worker and scheduler as
processes on PostgreSQL and Redis; a completion webhook to a local receiver; an
OpenAI-compatible provider played by a local HTTP server; the write-up's back-off and limits
scaled down through the example's configuration."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from summarization import api as summary_api
from summarization import jobs as summary
from summarization.summarizers import ExtractiveSummarizer

from crisper import Crisper
from tests.api_support import serve
from tests.examples.conftest import EXAMPLES
from tests.harness import ROOT, Backend, wait_for
from tests.receiver import receiver, serving

pytestmark = pytest.mark.backends("postgres-redis")
TRANSCRIPT = (
    "The candidate described leading the data platform migration over two quarters. "
    "Lunch was fine. The migration moved the data platform from nightly batches to streaming. "
    "They said the weather had been poor. They mentored two engineers through the migration. "
    "Costs of the data platform fell by a third after the streaming migration.")
SESSION = {"session_id": "s-1", "candidate_id": "c-1", "mode": "SELF_REPORT"}


@dataclass
class Provider:
    """A local OpenAI-compatible endpoint: answers 503 while `down`, sleeps `delay` first."""

    down: bool = False
    delay: float = 0.0
    got: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def provider(plan: Provider) -> Iterator[str]:
    def answer(path: str, headers: dict[str, str], raw: bytes) -> tuple[int, bytes]:
        body = json.loads(raw)
        with plan.lock:
            plan.got.append({"path": path, "auth": headers.get("Authorization"), "body": body})
        time.sleep(plan.delay)
        text = body["messages"][1]["content"]
        status, answered = (503, {}) if plan.down else (200, {"choices": [
            {"message": {"role": "assistant", "content": f"LLM: {text[:20]}"}}]})
        return status, json.dumps(answered).encode()

    with serving(answer) as url:
        yield url + "/v1"


class Service:
    """The example as deployed, and what a client of it does."""

    def __init__(self, app: Crisper, client: httpx.Client) -> None:
        self.app, self.client = app, client

    def status(self, task_id: str) -> dict[str, Any]:
        got: dict[str, Any] = self.client.get(f"/summarization/task-status/{task_id}").json()
        return got

    def until(self, task_id: str, status: str, timeout: float = 90) -> dict[str, Any]:
        found: dict[str, Any] = wait_for(
            lambda: (s := self.status(task_id))["status"] == status and s, timeout,
            f"task {task_id} to be {status}", every=0.1)
        return found

    def summarize(self, **changes: str) -> str:
        r = self.client.post("/summarization/summarize-session", json={**SESSION, **changes})
        assert r.status_code == 202, r.text
        return str(r.json()["task_id"])


@contextmanager
def deployed(backend: Backend, **config: str) -> Iterator[Service]:
    env = {"CRISPER_APP": "summarization.jobs", "PYTHONPATH": f"{ROOT}:{EXAMPLES}",
           "CRISPER_OUTBOUND_ALLOW": "127.0.0.1/32", "CRISPER_WEBHOOK_BACKOFF_SECONDS": "0.2",
           **config}
    settings = summary.Config.from_env(config)
    app = summary.build(backend.settings, settings)
    with serve(summary_api.create_api(app, settings)) as url, httpx.Client(
            base_url=url, timeout=30) as client:
        backend.start_scheduler(**env)
        backend.start_worker(concurrency=2, extra=["-Q", summary.QUEUE], **env)
        site = Service(app, client)
        r = client.put("/summarization/sessions/s-1",
                       json={"candidate_id": "c-1", "transcript": TRANSCRIPT})
        assert r.status_code == 200, r.text
        try:
            yield site
        finally:
            app.store.close()


@pytest.mark.timeout(240)
def test_a_summary_is_accepted_polled_and_called_back(backend: Backend) -> None:
    with receiver() as hook, deployed(backend) as site:
        # Given a stored session, when its summary is asked for with a completion webhook
        r = site.client.post("/summarization/summarize-session",
                             json={**SESSION, "callback_url": f"{hook.url}/done"})

        # Then it is accepted at once with a task id
        assert r.status_code == 202
        accepted = r.json()
        assert accepted["status"] == "INITIATED" and accepted["task_id"] in accepted["message"]

        # and polling shows it succeed with the offline extractive summary
        done = site.until(accepted["task_id"], "SUCCESS")
        expected = ExtractiveSummarizer().summarize(TRANSCRIPT, mode="SELF_REPORT",
                                                    sentences=3)
        assert done["result"]["summary"] == expected and done["error"] is None
        assert done["result"]["provider"] == "extractive"
        assert "Lunch" not in expected and expected.count(".") == 3

        # and the webhook got the task's final record, once
        wait_for(lambda: hook.got, 60, "the completion webhook")
        call = hook.got[0]
        body = json.loads(call.body)
        assert call.path == "/done" and call.headers["Crisper-Event"] == "job.callback"
        assert body["data"]["id"] == accepted["task_id"]
        assert body["data"]["result"]["summary"] == expected

        # and a profile is made from the candidate's session summaries
        r = site.client.post("/summarization/summarize-profile", json={"candidate_id": "c-1"})
        profile = site.until(r.json()["task_id"], "SUCCESS")
        assert profile["result"]["sessions"] == 1

        # An id it never issued is not found, never PENDING
        for unknown in ("0190a7c4-0000-7000-8000-000000000000", "not-an-id"):
            r = site.client.get(f"/summarization/task-status/{unknown}")
            assert r.status_code == 404 and "not found" in r.json()["detail"]
        assert site.client.post("/summarization/summarize-session",
                                json={**SESSION, "session_id": "../x"}).status_code == 422


@pytest.mark.timeout(240)
def test_a_provider_outage_backs_off_then_dead_letters_and_replays(backend: Backend) -> None:
    plan = Provider(down=True)
    with provider(plan) as llm, deployed(backend, SUMMARIZATION_BACKOFF="0.5s",
                                         SUMMARIZATION_LLM_BASE_URL=llm,
                                         SUMMARIZATION_LLM_API_KEY="sk-test") as site:
        # Given the configured provider answering 503
        task = site.summarize()

        # Then the task shows RETRY between attempts, and fails after 1 + 3 tries
        site.until(task, "RETRY")
        failed = site.until(task, "FAILURE")
        assert failed["attempt"] == 4 and "503" in failed["error"]
        assert len(plan.got) == 4 and plan.got[0]["auth"] == "Bearer sk-test"
        # the tries 0.5, 1 and 2 s apart (the write-up's 60, 120, 240 s, scaled down)
        events = site.app.jobs.events(task)
        started = [e.at for e in events if e.to_state == "running"]
        gaps = [(b - a).total_seconds() for a, b in zip(started, started[1:], strict=False)]
        assert len(gaps) == 3 and all(g >= want for g, want in zip(gaps, (0.5, 1.0, 2.0),
                                                                   strict=True)), gaps

        # and it is in the dead-letter queue
        dead = {d["task_id"]: d for d in site.client.get("/summarization/failed").json()}
        assert dead[task]["error_type"] == "ProviderUnavailable"
        assert dead[task]["params"] == SESSION

        # When the provider is back and the task is replayed, it succeeds through the provider
        plan.down = False
        r = site.client.post(f"/summarization/failed/{task}/replay")
        assert r.status_code == 202 and r.json()["status"] in ("PENDING", "STARTED", "SUCCESS")
        done = site.until(task, "SUCCESS")
        assert done["result"]["provider"] == "openai-compatible"
        assert done["result"]["summary"] == f"LLM: {TRANSCRIPT[:20]}"
        assert task not in {d["task_id"] for d in site.client.get("/summarization/failed").json()}
        assert site.client.post(f"/summarization/failed/{task}/replay").status_code == 409


@pytest.mark.timeout(240)
def test_a_wrong_request_fails_at_once_and_is_replayed_with_edited_params(
        backend: Backend) -> None:
    with deployed(backend) as site:
        # Given a request naming a session the candidate does not have
        task = site.summarize(session_id="s-404")

        # Then it fails on its first attempt (no back-off can fix it)
        failed = site.until(task, "FAILURE")
        assert failed["attempt"] == 1 and "no session s-404 of candidate c-1" in failed["error"]

        # When it is replayed with params its type refuses, nothing happens
        bad = site.client.post(f"/summarization/failed/{task}/replay",
                               json={"params": {**SESSION, "session_id": "../etc"}})
        assert bad.status_code == 422
        assert site.status(task)["status"] == "FAILURE"

        # When it is replayed with the right session, it succeeds under the same task id
        r = site.client.post(f"/summarization/failed/{task}/replay",
                             json={"params": {**SESSION, "session_id": "s-1"}})
        assert r.status_code == 202
        done = site.until(task, "SUCCESS")
        assert done["result"]["session_id"] == "s-1" and done["attempt"] == 1
        edit = [e.detail for e in site.app.jobs.events(task) if e.reason == "retried"]
        assert edit == [{"edit": {"before": {**SESSION, "session_id": "s-404"},
                                  "after": SESSION}}]


@pytest.mark.timeout(240)
def test_the_soft_limit_ends_a_hung_provider_call_without_a_retry(backend: Backend) -> None:
    # The write-up's limits are the defaults
    options = summary.build(config=summary.Config()).registry.get(summary.SESSION).options
    assert (options.timeout, options.hard_timeout) == (25 * 60.0, 30 * 60.0)
    assert (options.retry.attempts, options.retry.backoff, options.retry.jitter) == (4, "60s",
                                                                                    False)

    plan = Provider(delay=20)
    with provider(plan) as llm, deployed(backend, SUMMARIZATION_SOFT_LIMIT="1s",
                                         SUMMARIZATION_HARD_LIMIT="3s",
                                         SUMMARIZATION_LLM_BASE_URL=llm) as site:
        # Given a provider that hangs far past the (scaled-down) soft limit
        task = site.summarize()

        # Then the soft limit ends the attempt, and a timeout is not retried
        failed = site.until(task, "FAILURE", timeout=60)
        record = site.app.jobs.get(task)
        assert record.error is not None and record.error["type"] == "SoftTimeLimitExceeded"
        assert failed["attempt"] == 1 and record.timeout == 1.0
