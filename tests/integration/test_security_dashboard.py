"""Hostile input on the dashboard's routes: escaping, CSRF and scopes, foreign ids.

The same world as tests/integration/test_security.py (the API's routes); the routes come from
the mounted dashboard itself, so a new one is covered, or fails here.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.integration.security_world import ME, XSS, World, fingerprint
from tests.integration.test_security import flat_routes, nested

pytestmark = pytest.mark.backends("postgres-redis")


# -- XSS: values and error messages are escaped in HTML, and the API answers JSON ----------

@contextmanager
def dashboard(w: World, secret: str) -> Iterator[httpx.Client]:
    """A browser-like session on the dashboard, logged in with `secret`."""
    with httpx.Client(base_url=f"{w.url}/dashboard", timeout=30) as client:
        login = client.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', login.text)
        assert token is not None
        r = client.post("/login", data={"csrf": token.group(1), "key": secret})
        assert r.status_code == 303, r.text
        yield client


def csrf_of(client: httpx.Client) -> str:
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text)
    assert token is not None
    return token.group(1)


def test_script_in_params_and_in_error_messages_is_escaped(world: World) -> None:
    job = world.app.submit("probe.echo", {"number": 1, "text": XSS}, tenant=ME, hold=True,
                           tags=["x"])
    with dashboard(world, world.admin) as client:
        page = client.get(f"/jobs/{job.id}")
        assert page.status_code == 200 and XSS not in page.text and "&lt;script&gt;" in page.text
        for url in (f"/submit?type={XSS}", f"/jobs?type={XSS}&tag={XSS}", f"/jobs/{XSS}"):
            r = client.get(url)
            assert r.status_code < 500 and XSS not in r.text, url
        r = client.post("/submit", data={"csrf": csrf_of(client), "type": XSS})
        assert r.status_code == 422 and XSS not in r.text and "&lt;script&gt;" in r.text
        r = client.post("/submit", data={"csrf": csrf_of(client), "type": "probe.noop",
                                         "queue": XSS})
        assert r.status_code == 422 and XSS not in r.text
    with world.http(world.admin) as api:
        r = api.post("/v1/jobs", json={"type": XSS})
        assert r.status_code == 422 and r.headers["content-type"].startswith(
            "application/problem+json")


# -- the dashboard's routes ----------------------------------------------------------------

def dashboard_posts(w: World) -> list[str]:
    """Every state-changing dashboard route, filled with the other tenant's job id."""
    mounted = next(r for r in w.api.routes if getattr(r, "path", "") == "/dashboard")
    paths = []
    for route in flat_routes(mounted.app.routes):  # type: ignore[attr-defined]
        if "POST" in route.methods and route.path != "/login":
            action = {"/jobs/{job_id}/{action}": "cancel", "/queues/{name}/{action}": "pause",
                      "/batches/{batch_id}/{action}": "cancel",
                      "/workflows/{workflow_id}/{action}": "cancel"}
            paths.append(route.path.format(job_id=w.their_job, name="default",
                                           action=action.get(route.path, ""),
                                           **w.their_others))
    return paths


def test_dashboard_posts_need_the_csrf_token_and_the_scope(world: World) -> None:
    before = fingerprint(world.app)
    posts = dashboard_posts(world)
    assert len(posts) >= 6
    form = {"type": "probe.noop", "ids": str(world.my_job), "action": "cancel"}
    with dashboard(world, world.admin) as admin, dashboard(world, world.reader) as reader:
        for path in posts:
            # no token, a wrong token, a foreign origin: refused
            assert admin.post(path, data=form).status_code == 403, path
            assert admin.post(path, data={**form, "csrf": "x" * 43}).status_code == 403, path
            r = admin.post(path, data={**form, "csrf": csrf_of(admin)},
                           headers={"Origin": "https://evil.example"})
            assert r.status_code == 403, path
            # a read-only session, with its own valid token: refused
            if path != "/logout":
                r = reader.post(path, data={**form, "csrf": csrf_of(reader)})
                assert r.status_code == 403, path
    assert fingerprint(world.app) == before


def test_dashboard_refuses_foreign_ids_poisoned_queues_and_deep_json(world: World) -> None:
    before = fingerprint(world.app)
    with dashboard(world, world.admin) as client:
        assert client.get(f"/jobs/{world.their_job}").status_code == 404
        assert client.get(f"/jobs/{world.their_job}/stream").status_code == 404
        their_batch = world.their_others["batch_id"]
        assert client.get(f"/batches/{their_batch}").status_code == 404
        assert client.get(f"/batches/{their_batch}/stream").status_code == 404
        token = csrf_of(client)
        r = client.post(f"/jobs/{world.their_job}/cancel", data={"csrf": token})
        assert r.status_code == 404
        r = client.post("/jobs/bulk", data={"csrf": token, "action": "cancel",
                                            "ids": str(world.their_job)})
        assert r.status_code < 500
        assert str(world.their_job) not in client.get("/jobs").text
        r = client.post("/submit", data={"csrf": token, "type": "probe.noop",
                                         "queue": "unacked"})
        assert r.status_code == 422 and "reserved" in r.text
        r = client.post("/queues/unacked/pause", data={"csrf": token})
        assert 400 <= r.status_code < 500
        for deep in (nested(300), nested(5000), '{"\\ud800": 1}'):
            r = client.post("/submit", data={"csrf": token, "type": "sec.document",
                                             "param.data": "{\"a\": " + deep + "}"
                                             if deep.startswith("[") else deep})
            assert r.status_code == 422, r.text
    # a session cookie crafted to nest deeply is no session at all
    cookie = base64.urlsafe_b64encode(nested(3000).encode()).decode()
    with httpx.Client(base_url=f"{world.url}/dashboard", timeout=30,
                      cookies={"crisper_session": cookie}) as forged:
        r = forged.get("/")
        assert r.status_code in (303, 401)
    assert fingerprint(world.app) == before
