"""Signed webhook deliveries against a real local HTTP receiver: the documented recipes
verify them, failures are retried and recorded, refused addresses stay refused, and a
scheduler killed mid-delivery loses nothing."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from crisper import Crisper
from crisper.maintenance.deliverer import Deliverer
from crisper.outbound import Guard
from crisper.store import utcnow
from crisper.webhooks import signing
from tests.api_support import api_server, key
from tests.harness import ROOT, Backend, wait_for
from tests.receiver import Plan, receiver

ALLOW = {"CRISPER_OUTBOUND_ALLOW": "127.0.0.1/32", "CRISPER_WEBHOOK_BACKOFF_SECONDS": "0.2"}
DOC = ROOT / "docs" / "webhooks.md"


def hooks_app(backend: Backend, allow: tuple[str, ...] = ("127.0.0.1/32",), **more: Any
              ) -> Crisper:
    return backend.app_with(outbound_allow=list(allow), webhook_backoff_seconds=0.2,
                            webhook_timeout_seconds=3.0, **more)


def pump(app: Crisper, deliverer: Deliverer, done: Any, timeout: float = 30.0) -> None:
    """Run the deliverer in this process until `done()` holds."""
    def step() -> Any:
        deliverer(utcnow())
        return done()
    try:
        wait_for(step, timeout, "the deliveries", every=0.1)
    finally:
        deliverer.close()


def ended_with_callback(app: Crisper, url: str) -> Any:
    """A held job with a callback URL, cancelled: it ends at once, no worker needed."""
    job = app.submit("probe.noop", hold=True, callback_url=url)
    job.cancel()
    return job


def recipe(name: str) -> str:
    """The code block the docs mark `<!-- recipe:NAME -->`."""
    found = re.search(rf"<!-- recipe:{name} -->\n```\w+\n(.*?)```", DOC.read_text(), re.S)
    assert found, f"docs/webhooks.md has no {name} recipe"
    return found.group(1)


def node_verify(secret: str, header: str, body: bytes) -> bool:
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the Node.js recipe cannot be run here")
    script = recipe("node") + (
        "\nconst input = JSON.parse(require('fs').readFileSync(0, 'utf8'));\n"
        "process.stdout.write(String(verifyCrisper(input.secret, input.header, "
        "Buffer.from(input.body, 'base64'))));\n")
    import base64
    out = subprocess.run(["node", "-e", script], input=json.dumps({
        "secret": secret, "header": header, "body": base64.b64encode(body).decode()}),
        capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.strip() == "true"


@pytest.mark.backends("postgres-redis")
def test_the_documented_recipes_verify_a_real_delivery_and_refuse_tampering(
        backend: Backend) -> None:
    # Given a tenant's secret and a job with a callback URL on a local receiver
    app = hooks_app(backend)
    secret = app.webhooks.secrets("default")[0]
    with receiver() as r:
        # When the job ends and the deliverer sends its callback
        job = ended_with_callback(app, r.url + "/done")
        pump(app, Deliverer(app.store, app.settings, app.jobs), lambda: r.got)
    got = r.got[0]
    header = got.headers[signing.SIGNATURE_HEADER]
    namespace: dict[str, Any] = {}
    exec(recipe("python"), namespace)  # noqa: S102 - the docs' own code, run as users would
    verify = namespace["verify_crisper"]
    # Then the body is the job's final record, and both recipes accept the signature
    body = json.loads(got.body)
    assert body["event"] == "job.callback" and body["data"]["id"] == str(job.id)
    assert body["data"]["state"] == "cancelled"
    assert got.headers[signing.EVENT_ID_HEADER] == body["event_id"]
    assert got.headers[signing.DELIVERY_HEADER]
    assert verify(secret, header, got.body)
    assert node_verify(secret, header, got.body)
    # And a tampered body, a wrong secret or a stale timestamp is refused by both
    tampered = got.body.replace(b"cancelled", b"succeeded")
    stale = signing.header([secret], int(time.time()) - 600, got.body)
    for args in ((secret, header, tampered), ("whsec_wrong", header, got.body),
                 (secret, stale, got.body)):
        assert not verify(*args)
        assert not node_verify(*args)


@pytest.mark.backends("postgres-redis")
@pytest.mark.timeout(180)
def test_a_receiver_failing_three_times_gets_it_on_the_fourth_try(backend: Backend) -> None:
    # Given a receiver that answers 500 three times, a worker and a scheduler
    with receiver(Plan(fail=3)) as r:
        backend.start_worker(concurrency=1)
        backend.start_scheduler(**ALLOW)
        # When a job with a callback URL runs to success
        app = backend.app
        job = app.submit("probe.echo", {"number": 7}, callback_url=r.url + "/cb")
        job.wait(timeout=60)
        wait_for(lambda: app.webhooks.deliveries("default", job_id=job.id)[0].state
                 == "delivered", 60, "the delivery to be recorded")
        # Then it got the delivery once it recovered, with four attempts recorded
        delivery = app.webhooks.deliveries("default", job_id=job.id)[0]
        _, tries = app.webhooks.delivery(delivery.id, "default")
        assert delivery.attempts == 4 and delivery.last_status == 200
        assert [t.status for t in tries] == [500, 500, 500, 200]
        assert len(r.got) == 4
        assert len({g.headers[signing.DELIVERY_HEADER] for g in r.got}) == 1
        assert json.loads(r.got[-1].body)["data"]["result"] == {"number": 7, "text": ""}
        # And the API shows the same record on the job
        with api_server(app) as base:
            auth = {"Authorization": f"Bearer {key(app, 'default')}"}
            shown = httpx.get(f"{base}/v1/jobs/{job.id}/deliveries", headers=auth).json()
            assert [(d["state"], d["attempts"], d["last_status"]) for d in shown] == [
                ("delivered", 4, 200)]
            one = httpx.get(f"{base}/v1/deliveries/{shown[0]['id']}", headers=auth).json()
            assert [t["status"] for t in one["tries"]] == [500, 500, 500, 200]
            # And a manual redelivery sends it once more, with the same ids
            again = httpx.post(f"{base}/v1/deliveries/{shown[0]['id']}/redeliver",
                               headers=auth)
            assert again.json()["state"] == "pending"
            wait_for(lambda: len(r.got) == 5, 30, "the redelivery")
        assert r.got[-1].headers[signing.EVENT_ID_HEADER] == r.got[0].headers[
            signing.EVENT_ID_HEADER]


def test_loopback_is_refused_without_the_allow_list(backend: Backend) -> None:
    app = hooks_app(backend, allow=())
    with receiver() as r:
        job = ended_with_callback(app, r.url + "/cb")
        pump(app, Deliverer(app.store, app.settings, app.jobs), lambda: app.webhooks.deliveries(
            "default", job_id=job.id)[0].state != "pending")
        assert r.got == []
    delivery = app.webhooks.deliveries("default", job_id=job.id)[0]
    assert delivery.state == "failed" and delivery.attempts == 1
    assert "loopback" in (delivery.last_error or "")


@pytest.mark.backends("postgres-redis")
def test_a_url_resolving_to_a_private_address_is_refused(backend: Backend) -> None:
    # Given a name that resolves to a private address (the resolver is the test's own)
    app = hooks_app(backend)
    guard = Guard(["127.0.0.1/32"], resolver=lambda host, port: ["10.9.8.7"])
    job = ended_with_callback(app, "http://hooks.example.com/cb")
    # When the deliverer tries it, it is refused before any connection, and not retried
    pump(app, Deliverer(app.store, app.settings, app.jobs, guard), lambda: app.webhooks.deliveries(
        "default", job_id=job.id)[0].state != "pending")
    delivery = app.webhooks.deliveries("default", job_id=job.id)[0]
    assert delivery.state == "failed" and delivery.attempts == 1
    assert "hooks.example.com resolves to a private address" in (delivery.last_error or "")
    assert "10.9.8.7" not in (delivery.last_error or "")  # a tenant learns no internal address


@pytest.mark.backends("postgres-redis")
def test_a_redirect_to_a_refused_address_is_refused(backend: Backend) -> None:
    # Given a public-looking name (resolving to the allowed 127.0.0.1) that redirects to a
    # loopback address the allow-list does not name, where another receiver listens
    app = hooks_app(backend)
    guard = Guard(["127.0.0.1/32"], resolver=lambda host, port: ["127.0.0.1"])
    with receiver(host="127.0.0.2") as hidden, receiver() as allowed, \
            receiver(Plan(redirect_to=hidden.url + "/x")) as front, \
            receiver(Plan(redirect_to=allowed.url + "/ok")) as good:
        front_port = front.url.rsplit(":", 1)[1]
        good_port = good.url.rsplit(":", 1)[1]
        bad_job = ended_with_callback(app, f"http://hooks.example.com:{front_port}/cb")
        ok_job = ended_with_callback(app, f"http://hooks.example.com:{good_port}/cb")
        # When both are delivered
        pump(app, Deliverer(app.store, app.settings, app.jobs, guard), lambda: all(
            app.webhooks.deliveries("default", job_id=j.id)[0].state != "pending"
            for j in (bad_job, ok_job)))
        # Then the redirect to the hidden address was refused and never reached it
        bad = app.webhooks.deliveries("default", job_id=bad_job.id)[0]
        assert bad.state == "failed" and "127.0.0.2" in (bad.last_error or "")
        assert len(front.got) == 1 and hidden.got == []
        # And a redirect to an allowed address is followed, keeping the POST and its body
        ok = app.webhooks.deliveries("default", job_id=ok_job.id)[0]
        assert ok.state == "delivered"
        assert json.loads(allowed.got[0].body)["data"]["id"] == str(ok_job.id)
        # (the first hop went to the checked address, saying the URL's own host name)
        assert good.got[0].headers["Host"] == f"hooks.example.com:{good_port}"


def _run_jobs(app: Crisper, count: int, **options: Any) -> list[Any]:
    """Submit `count` no-op jobs, wait for each; answer their final records."""
    jobs = [app.submit("probe.noop", **options) for _ in range(count)]
    for job in jobs:
        job.wait(timeout=120)
    return [app.jobs.get(job.id) for job in jobs]


def _durations(records: list[Any]) -> str:
    runs = sorted((r.finished_at - r.started_at).total_seconds() for r in records)
    waits = sorted((r.finished_at - r.created_at).total_seconds() for r in records)
    return (f"run median {runs[len(runs) // 2] * 1000:.0f} ms, submit-to-end median "
            f"{waits[len(waits) // 2] * 1000:.0f} ms, max {waits[-1] * 1000:.0f} ms")


@pytest.mark.backends("postgres-redis")
@pytest.mark.timeout(300)
def test_a_hanging_receiver_does_not_delay_job_execution(backend: Backend) -> None:
    # Given a worker, a scheduler whose tries wait 60 s for an answer, and 30 jobs' figures
    # with no webhooks at all
    app = backend.app
    backend.start_worker(concurrency=2)
    backend.start_scheduler(**ALLOW, CRISPER_WEBHOOK_TIMEOUT_SECONDS="60")
    _run_jobs(app, 5)  # warm up
    baseline = _run_jobs(app, 30)
    with receiver() as healthy:  # and with a callback each, to a receiver that answers at once
        healthy_run = _run_jobs(app, 30, callback_url=healthy.url + "/ok")
        wait_for(lambda: len(healthy.got) >= 30, 60, "the healthy receiver's deliveries")
    gate = threading.Event()
    with receiver(Plan(gate=gate)) as r:
        try:
            # And a receiver that takes every request and never answers (until the gate opens)
            app.webhooks.subscribe(r.url + "/sub", ["job.succeeded"], "default")
            _run_jobs(app, 5, callback_url=r.url + "/first")
            wait_for(lambda: r.plan.arrived >= 1, 30, "a delivery to hang on the receiver")
            # When 30 more jobs, each with a callback URL there too, run meanwhile
            hung = _run_jobs(app, 30, callback_url=r.url + "/cb")
            # Then all of them ended while no try had come back: not one job waited for one
            outbox = app.webhooks.deliveries("default", limit=1000)
            held = [d for d in outbox if "/ok" not in (d.url or "")]
            assert r.plan.served == 0 and r.plan.arrived >= 1
            assert len(held) == 70 and all(d.last_status is None and d.last_error is None
                                           for d in held)
            assert all(h.state.value == "succeeded" for h in hung)
        finally:
            gate.set()
        # And once the receiver answers, every delivery arrives
        wait_for(lambda: all(d.state == "delivered" for d in app.webhooks.deliveries(
            "default", limit=1000)), 120, "the held deliveries", every=0.5)
    print(f"\n30 jobs, no webhooks: {_durations(baseline)}\n30 jobs with a callback to a "
          f"receiver answering at once: {_durations(healthy_run)}\n30 jobs, every end sent twice "
          f"to a receiver that hangs (60 s timeout, {r.plan.arrived} requests held): "
          f"{_durations(hung)}")


def test_recipes_are_in_the_docs() -> None:
    assert "verify_crisper" in recipe("python") and "verifyCrisper" in recipe("node")
    assert Path(DOC).exists()


def test_an_outcome_and_its_deliveries_commit_together_on_the_fast_path(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from crisper.states import JobState
    from crisper.store import attempts as attempt_sql
    from crisper.store import deliveries as outbox

    # Given a running job with a callback URL, claimed as a worker claims it
    app = hooks_app(backend)
    job = app.submit("probe.noop", callback_url="http://hooks.example.com/cb")
    with app.store.transaction() as session:
        claimed = attempt_sql.claim(session, [job.id], "w@test", "t1", 30, utcnow())
    assert claimed and claimed[0].notifies
    lease = claimed[0].lease_token

    def fail(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("outbox write failed")

    # When its outcome is written on the autocommit connection and the outbox write fails
    monkeypatch.setattr(outbox, "job_moved", fail)
    with pytest.raises(RuntimeError), app.store.autocommit() as conn:
        attempt_sql.finish(conn, job.id, lease, JobState.SUCCEEDED, utcnow(),
                           reason="succeeded", result=1)
    # Then the outcome rolled back with it: the job is still running, no delivery exists
    assert app.jobs.get(job.id).state is JobState.RUNNING
    assert app.webhooks.deliveries("default", job_id=job.id) == []
    # And once the outbox write works, both commit together
    monkeypatch.undo()
    with app.store.autocommit() as conn:
        assert attempt_sql.finish(conn, job.id, lease, JobState.SUCCEEDED,
                                  utcnow() + timedelta(seconds=1), reason="succeeded", result=1)
    assert app.jobs.get(job.id).state is JobState.SUCCEEDED
    assert [d.event for d in app.webhooks.deliveries("default", job_id=job.id)] == [
        "job.callback"]


def test_subscriptions_hear_their_tenant_and_filters_only(backend: Backend) -> None:
    app = hooks_app(backend)
    with receiver() as r:
        app.webhooks.subscribe(r.url + "/noop", ["job.cancelled"], "acme", type="probe.noop")
        app.webhooks.subscribe(r.url + "/all", ["job.cancelled", "job.failed"], "acme")
        for tenant, job_type in (("acme", "probe.noop"), ("acme", "probe.echo"),
                                 ("other", "probe.noop")):
            params = {"number": 1} if job_type == "probe.echo" else {}
            app.submit(job_type, params, tenant=tenant, hold=True).cancel()
        pump(app, Deliverer(app.store, app.settings, app.jobs), lambda: len(r.got) >= 3)
        time.sleep(0.5)
    paths = sorted((g.path, json.loads(g.body)["data"]["type"]) for g in r.got)
    assert paths == [("/all", "probe.echo"), ("/all", "probe.noop"), ("/noop", "probe.noop")]
    # one event, one id, whatever the number of subscribers
    noop_events = {g.headers[signing.EVENT_ID_HEADER] for g in r.got
                   if json.loads(g.body)["data"]["type"] == "probe.noop"}
    assert len(noop_events) == 1


def test_ended_deliveries_are_pruned_and_pending_ones_kept(backend: Backend) -> None:
    from datetime import timedelta

    from crisper.store import deliveries as outbox

    app = hooks_app(backend)
    with receiver() as r:
        sent = ended_with_callback(app, r.url + "/a")
        pump(app, Deliverer(app.store, app.settings, app.jobs), lambda: r.got)
    waiting = ended_with_callback(app, "http://hooks.example.com/later")  # never tried
    with app.store.transaction() as session:
        assert outbox.prune(session, utcnow() + timedelta(seconds=1), 100) == 1
    assert app.webhooks.deliveries("default", job_id=sent.id) == []
    assert [d.state for d in app.webhooks.deliveries("default", job_id=waiting.id)] == [
        "pending"]


@pytest.mark.backends("postgres-redis")
@pytest.mark.timeout(180)
def test_job_events_from_real_workers_reach_their_subscription(backend: Backend) -> None:
    # Given a subscription to every job event (job.poisoned: test_worker_hardening.py)
    app = backend.app
    with receiver() as r:
        app.webhooks.subscribe(r.url + "/events", ["job.succeeded", "job.failed",
                                                   "job.retrying", "job.cancelled"], "default")
        backend.start_worker(concurrency=2)
        backend.start_scheduler(**ALLOW)
        # When a job fails once then succeeds, one fails for good and one is cancelled
        flaky = app.submit("probe.flaky", {"fail_times": 1})
        broken = app.submit("probe.explode", {"message": "no"})
        held = app.submit("probe.noop", hold=True)
        held.cancel()
        for job in (flaky, broken):
            job.wait(timeout=60)
        wait_for(lambda: len(r.got) >= 4, 60, "four events")
        time.sleep(1)  # time for any extra one to show up
    # Then each job's events arrived, in its own order, with its record
    seen: dict[str, list[str]] = {}
    for g in sorted(r.got, key=lambda g: json.loads(g.body)["at"]):
        body = json.loads(g.body)
        assert body["event"] == g.headers[signing.EVENT_HEADER]
        seen.setdefault(body["data"]["id"], []).append(body["event"])
    assert seen == {str(flaky.id): ["job.retrying", "job.succeeded"],
                    str(broken.id): ["job.failed"], str(held.id): ["job.cancelled"]}


@pytest.mark.backends("postgres-redis")
def test_a_receiver_that_never_recovers_is_given_up_on_after_the_bounded_time(
        backend: Backend) -> None:
    # Given tries 0.2 s apart, doubling, and a give-up time of 1 s after the first try
    app = hooks_app(backend, webhook_give_up_seconds=1.0)
    with receiver(Plan(fail=10**6)) as r:
        job = ended_with_callback(app, r.url + "/down")
        # When the receiver answers 500 to every try
        pump(app, Deliverer(app.store, app.settings, app.jobs), lambda: app.webhooks.deliveries(
            "default", job_id=job.id)[0].state != "pending")
    # Then the delivery is failed, each try recorded, spaced by the doubling back-off
    delivery, tries = app.webhooks.delivery(
        app.webhooks.deliveries("default", job_id=job.id)[0].id, "default")
    gaps = [(b.at - a.at).total_seconds() for a, b in zip(tries, tries[1:], strict=False)]
    print(f"\ngiven up after {len(tries)} tries, gaps {[round(g, 2) for g in gaps]} s")
    assert delivery.state == "failed" and delivery.last_status == 500
    assert len(tries) == len(r.got) == delivery.attempts >= 2
    assert all(t.status == 500 for t in tries)
    # (no try before its back-off: the next is due 0.2 s x 2^n after the end of the last)
    assert all(gap >= 0.2 * 2 ** n for n, gap in enumerate(gaps))
