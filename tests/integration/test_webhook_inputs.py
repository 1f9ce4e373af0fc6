"""Webhook inputs from every door (HTTP API, Python client, CLI) and from a hostile tenant
with a valid key: what is accepted reaches a real receiver, what is refused stores nothing,
and what is stored is rendered inert on the dashboard. Secret rotation on real deliveries."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import httpx
import pytest

from crisper.client import Client
from crisper.dashboard.session import SESSION_COOKIE, new_session
from crisper.maintenance.deliverer import Deliverer
from crisper.store import utcnow
from crisper.webhooks import signing
from tests.api_support import api_server, key
from tests.harness import ROOT, Backend, wait_for
from tests.integration.test_webhooks import hooks_app, pump, recipe
from tests.receiver import receiver


def _deliver(app: Any, count: int, got: Any) -> None:
    pump(app, Deliverer(app.store, app.settings, app.jobs), lambda: len(got()) >= count)


@pytest.mark.backends("postgres-redis")
def test_callback_url_from_the_http_api_the_python_client_and_the_cli(backend: Backend) -> None:
    app = hooks_app(backend)
    with receiver() as r, api_server(app) as base:
        writer = key(app, "default")
        # Given one held job with a callback URL from each door
        raw = httpx.post(f"{base}/v1/jobs", headers={"Authorization": f"Bearer {writer}"},
                         json={"type": "probe.noop", "hold": True,
                               "callback_url": r.url + "/http"})
        assert raw.status_code == 202, raw.text
        with Client(base, writer) as client:
            via_client = client.submit("probe.noop", hold=True, callback_url=r.url + "/client")
        via_python = app.submit("probe.noop", hold=True, callback_url=r.url + "/python")
        out = subprocess.run([sys.executable, "-m", "crisper", "submit", "probe.noop", "--hold",
                              "--callback-url", r.url + "/cli"], cwd=ROOT,
                             env=backend.process_env(), capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        ids = {"/http": raw.json()["id"], "/client": str(via_client.id),
               "/python": str(via_python.id), "/cli": out.stdout.split()[0]}
        # When each ends
        for job_id in ids.values():
            app.jobs.cancel(job_id)
        _deliver(app, 4, lambda: r.got)
    # Then each door's URL got its own job's final record, once
    assert sorted((g.path, json.loads(g.body)["data"]["id"]) for g in r.got) == sorted(
        ids.items())


@pytest.mark.backends("postgres-redis")
def test_a_rotated_secret_keeps_signing_for_its_overlap_then_stops(backend: Backend) -> None:
    app = hooks_app(backend)
    namespace: dict[str, Any] = {}
    exec(recipe("python"), namespace)  # noqa: S102 - the docs' own recipe
    verify = namespace["verify_crisper"]
    with receiver() as r, api_server(app) as base:
        admin = {"Authorization": f"Bearer {key(app, 'default')}"}
        old = httpx.get(f"{base}/v1/webhooks/secret", headers=admin).json()["secrets"]
        # When the secret is rotated through the API with a 2 s overlap
        rotated = httpx.post(f"{base}/v1/webhooks/secret/rotate", headers=admin,
                             params={"overlap": 2}).json()["secrets"]
        new = rotated[0]
        assert rotated == [new, *old] and new not in old
        # Then a delivery during the overlap carries both signatures, each verifying
        app.submit("probe.noop", hold=True, callback_url=r.url + "/during").cancel()
        _deliver(app, 1, lambda: r.got)
        during = r.got[0]
        header = during.headers[signing.SIGNATURE_HEADER]
        assert header.count("v1=") == 2
        assert verify(new, header, during.body) and verify(old[0], header, during.body)
        # And once the overlap is over, only the new secret signs
        wait_for(lambda: app.webhooks.secrets("default") == [new], 30, "the overlap to end")
        app.submit("probe.noop", hold=True, callback_url=r.url + "/after").cancel()
        _deliver(app, 2, lambda: r.got)
    after = r.got[1]
    header = after.headers[signing.SIGNATURE_HEADER]
    assert header.count("v1=") == 1 and verify(new, header, after.body)
    assert not verify(old[0], header, after.body)


HOSTILE_SUBSCRIPTIONS = [
    {"url": "http://user:pw@hooks.example.com/", "events": ["job.failed"]},
    {"url": "http://hooks.example.com/\r\nX-Evil: 1", "events": ["job.failed"]},
    {"url": "gopher://hooks.example.com/", "events": ["job.failed"]},
    {"url": "http://hooks.example.com:99999/", "events": ["job.failed"]},
    {"url": "https://hooks.example.com/", "events": []},
    {"url": "https://hooks.example.com/", "events": ["job.*"]},
    {"url": "https://hooks.example.com/", "events": ["job.callback"]},
    {"url": "https://hooks.example.com/", "events": ["job.failed"] * 21},
    {"url": "https://hooks.example.com/", "events": [{"$ne": 1}]},
    {"url": "https://hooks.example.com/", "events": ["job.failed"], "type": "a\x00b"},
    {"url": "https://hooks.example.com/", "events": ["job.failed"], "queue": "q\nx"},
    {"url": "https://hooks.example.com/", "events": ["job.failed"], "type": "t" * 201},
    {"url": "https://hooks.example.com/" + "a" * 2000, "events": ["job.failed"]},
]


@pytest.mark.backends("postgres-redis")
def test_hostile_subscriptions_and_batches_are_refused_and_store_nothing(
        backend: Backend) -> None:
    app = hooks_app(backend)
    with api_server(app) as base:
        auth = {"Authorization": f"Bearer {key(app, 'acme')}"}
        for body in HOSTILE_SUBSCRIPTIONS:
            answer = httpx.post(f"{base}/v1/webhooks/subscriptions", headers=auth, json=body)
            assert answer.status_code in (400, 422), (body, answer.status_code, answer.text)
        noop = {"type": "probe.noop", "hold": True}
        batches = [
            {"jobs": []}, {"jobs": [noop] * 10_001},
            {"jobs": [noop], "callbacks": {"always": {"url": "https://hooks.example.com/"}}},
            {"jobs": [noop], "callbacks": {"complete": {"url": "file:///etc/passwd"}}},
            {"jobs": [noop], "callbacks": {"complete": {"job": {"type": "no.such.type"}}}},
            {"jobs": [noop], "callbacks": {"death": {"job": {"type": "probe.echo",
                                                            "params": "x"}}}},
            {"jobs": [{**noop, "callback_url": "http://a@hooks.example.com/"}]},
            {"jobs": [noop], "description": "d\x07"},
        ]
        for body in batches:
            answer = httpx.post(f"{base}/v1/batches", headers=auth, json=body)
            assert answer.status_code in (400, 413, 422), (str(body)[:200], answer.text[:300])
        assert app.webhooks.subscriptions("acme") == []
        assert app.batches.list_batches() == [] and app.list_jobs().items == []
        # And a sound subscription is made, listed and removed through the same API
        made = httpx.post(f"{base}/v1/webhooks/subscriptions", headers=auth, json={
            "url": "https://hooks.example.com/ok", "events": ["job.failed", "batch.finished"],
            "queue": "default"})
        assert made.status_code == 201, made.text
        listed = httpx.get(f"{base}/v1/webhooks/subscriptions", headers=auth).json()
        assert [(s["id"], s["events"], s["queue"]) for s in listed] == [
            (made.json()["id"], ["job.failed", "batch.finished"], "default")]
        gone = httpx.delete(f"{base}/v1/webhooks/subscriptions/{made.json()['id']}",
                            headers=auth)
        assert gone.status_code == 204 and app.webhooks.subscriptions("acme") == []


XSS = "<script>alert(1)</script>"


@pytest.mark.backends("postgres-redis")
def test_what_a_tenant_stores_is_rendered_inert_on_the_dashboard(backend: Backend) -> None:
    from crisper.batches import Callback
    from crisper.service import SubmitRequest

    app = hooks_app(backend, allow=())
    url = f'http://10.0.0.1/"><svg/onload=alert(1)>{XSS}'  # refused when called
    app.webhooks.subscribe(url, ["job.failed"], "acme", type=f"t{XSS}", queue=f"q{XSS}")
    batch = app.batches.submit([SubmitRequest("probe.noop", hold=True)], tenant="acme",
                               description=XSS, callbacks={"complete": Callback(url=url)})
    app.batches.cancel(batch.id, "acme")
    deliverer = Deliverer(app.store, app.settings, app.jobs)
    wait_for(lambda: (deliverer(utcnow()), app.webhooks.deliveries("acme")[0].state)[1]
             == "failed", 30, "the refused delivery")  # its error quotes the URL
    deliverer.close()
    with api_server(app) as root:
        cookies = {SESSION_COOKIE: new_session(key(app, "acme")).encode()}
        pages = [httpx.get(f"{root}/dashboard/{path}", cookies=cookies) for path in
                 ("webhooks", "batches", f"batches/{batch.id}")]
    for page in pages:
        assert page.status_code == 200
        assert XSS not in page.text and "<svg/onload" not in page.text
        assert "&lt;script&gt;" in page.text
    assert re.search(r"failed", pages[2].text)
    print(f"\nrefused delivery's error, as stored: {app.webhooks.deliveries('acme')[0].last_error}")
