"""Batches: one call and one transaction for many jobs, counters kept in each outcome's
transaction, and callbacks fired once per batch however many schedulers run."""

from __future__ import annotations

import json
import time
from collections import Counter

import httpx
import pytest

from crisper.batches import Callback
from crisper.service import SubmitRequest
from crisper.store.jobs import JobFilter
from crisper.webhooks import signing
from tests.api_support import api_server, key
from tests.harness import Backend, wait_for
from tests.receiver import receiver

ALLOW = {"CRISPER_OUTBOUND_ALLOW": "127.0.0.1/32", "CRISPER_WEBHOOK_BACKOFF_SECONDS": "0.2"}


def _events(got: list) -> Counter[str]:
    return Counter(g.headers[signing.EVENT_HEADER] for g in got)


@pytest.mark.slow
@pytest.mark.backends("postgres-redis")
@pytest.mark.timeout(600)
def test_a_1000_job_batch_with_one_failure_completes_once_and_never_succeeds(
        backend: Backend) -> None:
    app = backend.app
    with receiver() as r:
        # Given a batch of 999 jobs that succeed and one that fails, with every callback
        requests = [SubmitRequest("probe.noop") for _ in range(999)]
        requests.insert(500, SubmitRequest("probe.explode", {"message": "the one"}))
        app.webhooks.subscribe(r.url + "/sub", ["batch.finished"], "default")
        hook = Callback(url=r.url + "/batch",
                        job={"type": "probe.echo", "params": {"number": 1}})
        began = time.monotonic()
        batch = app.batches.submit(requests, description="thousand", callbacks={
            "success": hook, "complete": hook, "death": Callback(url=r.url + "/death")})
        submitted = time.monotonic() - began
        assert batch.total == 1000 and batch.pending == 1000
        # When two workers run them with three schedulers side by side
        procs = [backend.start_scheduler(**ALLOW) for _ in range(3)]
        backend.start_worker(concurrency=4)
        backend.start_worker(concurrency=4)
        wait_for(lambda: app.batches.get(batch.id).pending == 0, 400, "the batch to end",
                 every=1.0)
        ended = time.monotonic() - began
        wait_for(lambda: _events(r.got)["batch.complete"] >= 1, 60, "the completion webhook")
        callback_jobs = lambda: app.list_jobs(type="probe.echo").items  # noqa: E731
        wait_for(lambda: callback_jobs() and callback_jobs()[0].state.value == "succeeded",
                 60, "the callback job")
        time.sleep(5)  # time for any duplicate to show up
        # Then the counters are exact, completion and death fired once, success never
        final = app.batches.get(batch.id)
        assert (final.succeeded, final.failed, final.cancelled) == (999, 1, 0)
        assert final.complete_fired_at and final.death_fired_at
        assert final.success_fired_at is None
        assert _events(r.got) == Counter({"batch.complete": 1, "batch.death": 1,
                                          "batch.finished": 1})
        complete = next(g for g in r.got if g.headers[signing.EVENT_HEADER] == "batch.complete")
        assert json.loads(complete.body)["data"]["failed"] == 1
        assert len(callback_jobs()) == 1
        outbox = app.webhooks.deliveries("default", batch_id=batch.id, limit=10)
        assert sorted(d.event for d in outbox) == [
            "batch.complete", "batch.complete", "batch.death", "batch.finished"]  # 1 is the job
        assert all(d.state == "delivered" for d in outbox)
        for proc in procs:
            assert proc.popen.poll() is None
    print(f"\n1000-job batch: submitted in {submitted:.2f}s (one transaction), all ended "
          f"after {ended:.1f}s with 2 workers x 4 and 3 schedulers; webhooks received: "
          f"{dict(_events(r.got))}, callback jobs: {len(callback_jobs())}")


@pytest.mark.backends("postgres-redis")
@pytest.mark.timeout(240)
def test_batch_api_cancel_retry_and_live_progress(backend: Backend) -> None:
    app = backend.app
    with receiver() as r, api_server(app) as base:
        auth = {"Authorization": f"Bearer {key(app, 'acme')}"}
        # Given a batch of three held jobs submitted through the API
        sent = httpx.post(f"{base}/v1/batches", headers=auth, json={
            "jobs": [{"type": "probe.noop", "hold": True} for _ in range(3)],
            "description": "api", "callbacks": {"complete": {"url": r.url + "/c"},
                                                "success": {"url": r.url + "/s"}}})
        assert sent.status_code == 201, sent.text
        batch = sent.json()
        assert (batch["total"], batch["pending"]) == (3, 3)
        jobs = httpx.get(f"{base}/v1/batches/{batch['id']}/jobs", headers=auth).json()
        assert {j["batch_id"] for j in jobs} == {batch["id"]} and len(jobs) == 3
        # When the batch is cancelled: every job ends cancelled, completion fires (not success)
        answer = httpx.post(f"{base}/v1/batches/{batch['id']}/cancel", headers=auth).json()
        assert answer["changed"] == 3
        shown = httpx.get(f"{base}/v1/batches/{batch['id']}", headers=auth).json()
        assert (shown["cancelled"], shown["pending"]) == (3, 0)
        assert shown["complete_fired_at"] and not shown["success_fired_at"]
        # And when it is retried, the jobs run again and the counters take them back
        assert httpx.post(f"{base}/v1/batches/{batch['id']}/retry",
                          headers=auth).json()["changed"] == 3
        shown = httpx.get(f"{base}/v1/batches/{batch['id']}", headers=auth).json()
        assert (shown["cancelled"], shown["pending"]) == (0, 3)
        backend.start_worker(concurrency=2)
        backend.start_scheduler(**ALLOW)
        # Then the live stream shows progress until every job has ended
        progress = []
        with httpx.stream("GET", f"{base}/v1/batches/{batch['id']}/stream", headers=auth,
                          timeout=120) as stream:
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    progress.append(json.loads(line[6:]))
        assert progress[-1]["succeeded"] == 3 and progress[-1]["pending"] == 0
        # And success fires now, while completion (fired before) does not fire again
        wait_for(lambda: _events(r.got)["batch.success"] == 1, 60, "the success webhook")
        time.sleep(2)
        assert _events(r.got) == Counter({"batch.complete": 1, "batch.success": 1})
        # And another tenant cannot see it
        other = {"Authorization": f"Bearer {key(app, 'other')}"}
        assert httpx.get(f"{base}/v1/batches/{batch['id']}", headers=other).status_code == 404
    assert len(app.list_jobs(state="succeeded").items) == 3
    assert not app.jobs.list_jobs(JobFilter(tenant="default"))


def test_a_batch_is_one_transaction_and_checks_its_callbacks(backend: Backend) -> None:
    from crisper.errors import InvalidParams, InvalidRequest, UnknownJobType

    app = backend.app
    good = [SubmitRequest("probe.noop", hold=True)]
    # A job that fails validation leaves nothing behind: no batch, no jobs
    with pytest.raises(InvalidParams):
        app.batches.submit([*good, SubmitRequest("probe.echo", {"number": "x"})])
    with pytest.raises(UnknownJobType):
        app.batches.submit(good, callbacks={"complete": Callback(job={"type": "nope"})})
    with pytest.raises(InvalidRequest):
        app.batches.submit(good, callbacks={"finally": Callback(url="http://x.example/")})
    with pytest.raises(InvalidRequest):
        app.batches.submit(good, callbacks={"success": Callback(url="ftp://x.example/")})
    assert app.batches.list_batches() == [] and app.list_jobs().items == []
