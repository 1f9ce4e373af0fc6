"""Hostile input, route by route: each gets its clear 4xx and changes nothing in the store.

The routes come from the app itself (the API's and the mounted dashboard's), so a new route
is covered, or fails here, without anyone remembering to add it. The dashboard in a real
browser (CSP, cookies, escaping as rendered) is tests/e2e/test_dashboard_security.py.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import select

from crisper.api import create_app
from crisper.app import Crisper
from crisper.errors import UnknownQueue
from crisper.keys import KeyService
from crisper.service import SubmitRequest
from crisper.store.jobs import JobFilter
from crisper.store.models import batches, deliveries, jobs, queues, schedules, subscriptions
from tests.api_support import serve
from tests.harness import Backend

pytestmark = pytest.mark.backends("postgres-redis")
ME, THEM = "acme", "globex"
XSS = "<script>window.__xss=1</script>"
POISONED_QUEUES = ["unacked", "unacked_index", "_kombu.binding.default", "celeryev",
                   "celery.pidbox", "w1.reply.celery.pidbox", "amq.gen-1", "nope"]


@dataclass
class World:
    """An API on a real store: my tenant's keys and jobs, and another tenant's things."""

    url: str
    app: Crisper
    api: FastAPI
    admin: str  # my tenant, every scope
    reader: str  # my tenant, read only
    revoked: str
    their_job: uuid.UUID
    their_schedule: str
    my_job: uuid.UUID  # held, tagged "a_c"
    # Their batch, webhook delivery and subscription, by path placeholder.
    their_others: dict[str, str] = field(default_factory=dict)

    def http(self, secret: str | None = None, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kw)


@pytest.fixture
def world(backend: Backend) -> Iterator[World]:
    app = backend.app_with(queues=["email"])

    @app.job(name="sec.document")
    def document(ctx: Any, data: dict[str, Any] | None = None) -> None:
        """A type with a free JSON parameter (a JSON field in the dashboard's form)."""

    keys = KeyService(app.store)
    revoked = keys.create(ME, ["read", "write", "admin"])
    keys.revoke(revoked.record.id)
    their_job = app.submit("probe.noop", tenant=THEM, hold=True, tags=["secret"]).id
    app.schedules.add("their-nightly", "probe.noop", "0 3 * * *", tenant=THEM)
    others = {
        "batch_id": str(app.batches.submit([SubmitRequest("probe.noop", hold=True)],
                                           tenant=THEM).id),
        "sub_id": str(app.webhooks.subscribe("https://hooks.example.com/s", ["job.failed"],
                                             THEM).id),
    }
    their_workflow = app.workflow("their-flow")
    their_workflow.add("probe.noop", name="only")
    others["workflow_id"] = str(their_workflow.submit(tenant=THEM).id)
    app.submit("probe.noop", tenant=THEM, hold=True,
               callback_url="https://hooks.example.com/c").cancel()
    others["delivery_id"] = str(app.webhooks.deliveries(THEM)[0].id)
    my_job = app.submit("probe.noop", tenant=ME, hold=True, tags=["a_c"]).id
    app.submit("probe.noop", tenant=ME, hold=True, tags=["abc"])
    api = create_app(app)
    with serve(api) as url:
        yield World(url, app, api, keys.create(ME, ["read", "write", "admin"]).secret,
                    keys.create(ME, ["read"]).secret, revoked.secret, their_job,
                    "their-nightly", my_job, others)


def fingerprint(app: Crisper) -> tuple[Any, ...]:
    """Everything a request could change: jobs, schedules, queue pauses."""
    with app.store.read() as s:
        return (
            sorted(map(tuple, s.execute(select(
                jobs.c.id, jobs.c.state, jobs.c.queue, jobs.c.tenant, jobs.c.attempt,
                jobs.c.cancel_requested_at)).all()), key=str),
            sorted(map(tuple, s.execute(select(
                schedules.c.name, schedules.c.tenant, schedules.c.enabled, schedules.c.queue,
                schedules.c.updated_at)).all()), key=str),
            sorted(map(tuple, s.execute(select(queues)).all()), key=str),
            sorted(map(tuple, s.execute(select(deliveries.c.id, deliveries.c.state,
                                               deliveries.c.next_at)).all()), key=str),
            sorted(map(tuple, s.execute(select(subscriptions.c.id)).all()), key=str),
            sorted(map(tuple, s.execute(select(batches)).all()), key=str),
        )


# -- the routes, from the app itself ---------------------------------------------------------

@dataclass(frozen=True)
class Call:
    method: str
    path: str  # with its placeholders filled
    template: str

    @property
    def writes(self) -> bool:
        return self.method != "GET"


def _actions(operation: dict[str, Any]) -> list[str]:
    for param in operation.get("parameters", []):
        if param["name"] == "action":
            return [str(v) for v in param["schema"]["enum"]]
    return [""]


def api_calls(w: World) -> list[Call]:
    """Every /v1 operation of the app's own OpenAPI document (every route is in it), its path
    filled with the other tenant's ids where it takes one."""
    calls = []
    for template, operations in w.api.openapi()["paths"].items():
        if not template.startswith("/v1"):
            continue
        for method, operation in sorted(operations.items()):
            for action in _actions(operation):
                name = "default" if template.startswith("/v1/queues") else w.their_schedule
                path = template.format(job_id=w.their_job, name=name, action=action,
                                       **w.their_others)
                calls.append(Call(method.upper(), path, template))
    return calls


def test_every_api_route_is_in_the_openapi_document(world: World) -> None:
    documented = {(m.upper(), p) for p, ops in world.api.openapi()["paths"].items() for m in ops}
    served = {(m, r.path) for r in flat_routes(world.api.routes) for m in r.methods
              if r.path.startswith("/v1")}
    assert served and served <= documented


def flat_routes(routes: Any) -> Iterator[APIRoute]:
    """The API routes of an app, through the routers it includes."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from flat_routes(route.original_router.routes)


BODIES: dict[str, Any] = {
    "/v1/jobs": {"type": "probe.noop"},
    "/v1/schedules/{name}": {"type": "probe.noop", "cron": "0 4 * * *"},
}


def body_for(call: Call, w: World) -> Any:
    if call.template in ("/v1/jobs/cancel", "/v1/jobs/retry"):
        return {"ids": [str(w.their_job)]}
    return BODIES.get(call.template) if call.writes else None


def send(client: httpx.Client, call: Call, body: Any = None, **kw: Any) -> httpx.Response:
    return client.request(call.method, call.path, json=body, **kw)


def test_the_route_table_covers_the_api(world: World) -> None:
    calls = api_calls(world)
    templates = {c.template for c in calls}
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/stream", "/v1/schedules/{name}",
            "/v1/queues/{name}/{action}", "/v1/jobs/cancel"} <= templates
    assert len(calls) >= 18


def test_no_key_or_a_revoked_key_is_a_401_everywhere_and_changes_nothing(world: World) -> None:
    before = fingerprint(world.app)
    for secret in (None, world.revoked, "crisper_" + "x" * 40, "' OR 1=1 --"):
        with world.http(secret) as client:
            for call in api_calls(world):
                r = send(client, call, body_for(call, world))
                assert r.status_code == 401, (secret, call, r.text)
                assert r.headers["content-type"].startswith("application/problem+json")
    assert fingerprint(world.app) == before


def test_a_read_only_key_is_a_403_on_every_write(world: World) -> None:
    before = fingerprint(world.app)
    with world.http(world.reader) as client:
        writes = [c for c in api_calls(world) if c.writes]
        assert len(writes) >= 9
        for call in writes:
            r = send(client, call, body_for(call, world))
            assert r.status_code == 403, (call, r.text)
    assert fingerprint(world.app) == before


def test_another_tenants_ids_are_not_found_and_never_touched(world: World) -> None:
    # Given my admin key, and every operation that names a job or a schedule
    before = fingerprint(world.app)
    with world.http(world.admin) as client:
        for call in api_calls(world):
            names_theirs = any(f"{{{k}}}" in call.template for k in ("job_id",
                                                                      *world.their_others))
            if not names_theirs and not call.template.startswith("/v1/schedules/{name}"):
                continue
            if call.template == "/v1/schedules/{name}" and call.method == "PUT":
                continue  # creating a schedule of one's own (below)
            r = send(client, call, body_for(call, world))
            # Then each answers 404, word for word as for an id nobody has
            assert r.status_code == 404, (call, r.text)
            nobody_path = call.path.replace(str(world.their_job), str(NOBODY)).replace(
                world.their_schedule, "nobody-has-it")
            for theirs in world.their_others.values():
                nobody_path = nobody_path.replace(theirs, str(NOBODY))
            nobody = Call(call.method, nobody_path, call.template)
            r2 = send(client, nobody, body_for(call, world))
            assert r2.status_code == 404 and _anonymous(r.json(), world) == _anonymous(
                r2.json(), world), (r.text, r2.text)
        # and a bulk action by their ids matches nothing
        for action in ("cancel", "retry"):
            r = client.post(f"/v1/jobs/{action}", json={"ids": [str(world.their_job)]})
            assert r.status_code == 200 and r.json()["matched"] == 0
        # and the lists hold only my jobs
        listed = client.get("/v1/jobs", params={"limit": 500}).json()["items"]
        assert {j["tenant"] for j in listed} == {ME}
        assert all(s["tenant"] == ME for s in client.get("/v1/schedules").json())
    assert fingerprint(world.app) == before


NOBODY = uuid.UUID(int=1)


def _anonymous(problem: dict[str, Any], w: World) -> str:
    text = json.dumps({k: v for k, v in problem.items() if k != "instance"})
    for name in (str(w.their_job), str(NOBODY), w.their_schedule, "nobody-has-it",
                 *w.their_others.values()):
        text = text.replace(name, "ID")
    return text


# -- bodies: oversized, deep, unstorable -----------------------------------------------------

def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("raw", [
    '{"type": "sec.document", "params": {"data": {"a": ' + nested(300) + "}}}",
    '{"type": "probe.echo", "params": {"number": 1, "text": ' + nested(5000) + "}}",
    '{"type": "probe.echo", "params": {"number": 1, "text": "\\ud800"}}',
    '{"type": "probe.echo", "params": {"number": 1, "\\udfff": 1}}',
    '{"type": "probe.echo", "params": {"number": 1, "text": "a\\u0000b"}}',
    '{"type": "probe.noop", "tags": ["\\ud800"]}',
    '{"type": "probe.noop", "idempotency_key": "\\ud800"}',
    '{"type": "probe.noop", "unique_key": "a\\u0000"}',
    '{"type": "probe.noop", "tags": ["%"]}',
    '{"type": "probe.noop", "tags": ["' + "x" * 101 + '"]}',
    '{"type": "probe.noop"',
])
def test_submit_bodies_no_store_can_take_are_a_4xx_naming_the_field(world: World,
                                                                   raw: str) -> None:
    before = fingerprint(world.app)
    with world.http(world.admin) as client:
        r = client.post("/v1/jobs", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 413, 422), r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    if r.status_code == 422:
        named = " ".join(str(e["loc"]) for e in body.get("errors", []))
        assert re.search(r"params|tags|idempotency_key|unique_key", named), body
    assert fingerprint(world.app) == before


def test_params_deeper_than_the_bound_are_a_422_and_shallower_ones_pass(world: World) -> None:
    with world.http(world.admin) as client:
        # (a free JSON parameter: nothing but the depth bound stops it before the store)
        for depth in (150, 300):
            deep = client.post("/v1/jobs", json={"type": "sec.document", "params": {
                "data": {"a": json.loads(nested(depth))}}})
            assert deep.status_code == 422 and "nested deeper than" in deep.text, deep.text
        ok = client.post("/v1/jobs", json={"type": "sec.document", "hold": True, "params": {
            "data": {"a": json.loads(nested(90))}}})
        assert ok.status_code == 202, ok.text
        schedule = client.put("/v1/schedules/deep", json={
            "type": "probe.echo", "cron": "0 3 * * *",
            "params": {"number": 1, "text": json.loads(nested(300))}})
        assert schedule.status_code == 422, schedule.text


def test_an_oversized_body_is_a_413_on_every_write(world: World) -> None:
    before = fingerprint(world.app)
    big = json.dumps({"type": "probe.echo", "params": {"number": 1, "text": "x" * 1_100_000}})
    with world.http(world.admin) as client:
        for call in [c for c in api_calls(world) if c.method in ("POST", "PUT")]:
            r = client.request(call.method, call.path, content=big,
                               headers={"Content-Type": "application/json"})
            assert r.status_code == 413, (call, r.status_code)
    assert fingerprint(world.app) == before


# -- queue names where they enter ----------------------------------------------------------

@pytest.mark.parametrize("queue", POISONED_QUEUES)
def test_a_queue_nobody_declared_or_a_broker_key_is_refused_everywhere(world: World,
                                                                     queue: str) -> None:
    before = fingerprint(world.app)
    with world.http(world.admin) as client:
        # HTTP submit: a 422 naming the field and the known queues
        r = client.post("/v1/jobs", json={"type": "probe.noop", "queue": queue})
        assert r.status_code == 422, r.text
        body = r.json()
        assert body["errors"][0]["loc"][-1] == "queue"
        if body["type"].endswith("unknown-queue"):
            assert body["known_queues"] == ["default", "email"]
        # schedules
        r = client.put("/v1/schedules/poison", json={"type": "probe.noop", "cron": "* * * * *",
                                                     "queue": queue})
        assert r.status_code == 422, r.text
        # pause/resume (admin) of a broker key
        if queue != "nope":
            for action in ("pause", "resume"):
                assert client.post(f"/v1/queues/{queue}/{action}").status_code == 422
    # the Python API
    with pytest.raises(UnknownQueue, match="queue"):
        world.app.submit("probe.noop", queue=queue, tenant=ME)
    with pytest.raises(UnknownQueue):
        world.app.schedules.add("poison", "probe.noop", "* * * * *", queue=queue)
    assert fingerprint(world.app) == before


def test_a_declared_queue_is_accepted(world: World) -> None:
    with world.http(world.admin) as client:
        r = client.post("/v1/jobs", json={"type": "probe.noop", "queue": "email", "hold": True})
        assert r.status_code == 202 and r.json()["queue"] == "email"


# -- filters and cursors -------------------------------------------------------------------

INJECTIONS = ["%", "_", "'", '"', "a' OR '1'='1", "%' --", "'; DROP TABLE crisper_jobs; --",
              "\\", "a_c%", "*", "[]", "$where", "\x00"]


def test_injection_like_filters_and_cursors_are_refused_or_match_exactly(world: World) -> None:
    before = fingerprint(world.app)
    with world.http(world.admin) as client:
        for text in INJECTIONS:
            for param in ("tag", "type", "queue", "state", "before", "created_after"):
                r = client.get("/v1/jobs", params={param: text})
                assert r.status_code in (200, 422), (param, text, r.text)
                if r.status_code == 200:  # nothing matches such text exactly
                    assert r.json()["items"] == [], (param, text)
            r = client.post("/v1/jobs/cancel", json={"filter": {"tag": text}})
            assert r.status_code in (200, 422), r.text
            assert r.status_code == 422 or r.json()["matched"] == 0, (text, r.text)
        for cursor in ("not-a-uuid", "00000000-0000-0000-0000-00000000000g", "1 OR 1=1"):
            assert client.get("/v1/jobs", params={"before": cursor}).status_code == 422
        assert client.get("/v1/jobs/not-a-uuid").status_code == 404
        assert client.get("/v1/jobs/' OR 1=1 --").status_code == 404
    assert fingerprint(world.app) == before


@pytest.mark.backends("postgres-redis", "sqlite-embedded")
def test_a_tag_filter_matches_the_tag_exactly_never_as_a_pattern(backend: Backend) -> None:
    # Given jobs tagged "a_c", "abc", "a.c", "x a_c" and another tenant's "a_c"
    app = backend.app
    tagged = {t: app.submit("probe.noop", tenant=ME, hold=True, tags=[t]).id
              for t in ("a_c", "abc", "a.c", "x a_c")}
    app.submit("probe.noop", tenant=THEM, hold=True, tags=["a_c"])

    def matching(tag: str) -> set[uuid.UUID]:
        return {j.id for j in app.jobs.list_jobs(JobFilter(tenant=ME, tag=tag))}

    # Then each tag matches only its own job: "_" and "%" are plain characters
    for tag, job_id in tagged.items():
        assert matching(tag) == {job_id}, tag
    for pattern in ("%", "_", "a%", "%c", "a_", "___", '"', "a", 'a_c"'):
        assert matching(pattern) == set(), pattern
    # And a bulk cancel by the tag "a_c" cancels that job alone
    result = app.jobs.bulk("cancel", JobFilter(tenant=ME, tag="a_c"))
    assert (result.matched, result.changed) == (1, 1)
    assert app.jobs.get(tagged["abc"]).state.value == "held"


def test_created_after_before_1970_finds_every_job(world: World) -> None:
    with world.http(world.admin) as client:
        every = client.get("/v1/jobs").json()["items"]
        for at in ("1969-12-31T23:59:59Z", "1900-01-01T00:00:00Z", "0001-01-01T00:00:00Z"):
            r = client.get("/v1/jobs", params={"created_after": at})
            assert r.status_code == 200 and r.json()["items"] == every, at
        assert len(every) == 2


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


def test_a_schedule_name_another_tenant_holds_is_mine_to_use_and_reveals_nothing(
        world: World) -> None:
    # Given another tenant's schedule "their-nightly"
    theirs = world.app.schedules.get(world.their_schedule, THEM)
    with world.http(world.admin) as client:
        # When I create a schedule of that name: it is created, as any new name would be
        body = {"type": "probe.echo", "cron": "0 5 * * *", "params": {"number": 7}}
        r = client.put(f"/v1/schedules/{world.their_schedule}", json=body)
        fresh = client.put("/v1/schedules/nobody-has-it", json=body)
        assert (r.status_code, fresh.status_code) == (201, 201), r.text
        assert r.json()["tenant"] == ME and r.json()["params"]["number"] == 7
        # and what I do to mine never touches theirs
        assert client.post(f"/v1/schedules/{world.their_schedule}/disable").status_code == 200
        assert client.delete(f"/v1/schedules/{world.their_schedule}").status_code == 204
        assert client.get(f"/v1/schedules/{world.their_schedule}").status_code == 404
    assert world.app.schedules.get(world.their_schedule, THEM) == theirs


def test_every_operation_with_input_documents_its_422(world: World) -> None:
    # Given the OpenAPI document the app serves
    missing = []
    for path, operations in world.api.openapi()["paths"].items():
        for method, op in operations.items():
            # Then an operation that takes parameters or a body documents the 422 it answers,
            # as the problem+json document it is
            if not (op.get("parameters") or op.get("requestBody")):
                continue
            answer = op["responses"].get("422", {}).get("content", {})
            if "application/problem+json" not in answer:
                missing.append(f"{method.upper()} {path}")
    assert missing == []


def test_the_docs_pages_load_their_assets_from_this_server(world: World) -> None:
    with httpx.Client(base_url=world.url, timeout=30) as client:
        for page in ("/docs", "/redoc"):
            html = client.get(page).text
            assets = re.findall(r'(?:src|href)="([^"]+)"', html)
            # Then every script and style is a path here, and each one is served
            assert assets and all(a.startswith("/") for a in assets), assets
            for asset in assets:
                r = client.get(asset)
                assert r.status_code == 200 and len(r.content) > 1000, asset
