"""Hostile input, route by route: each gets its clear 4xx and changes nothing in the store.

The routes come from the app itself (the API's and the mounted dashboard's), so a new route
is covered, or fails here, without anyone remembering to add it. The dashboard in a real
browser (CSP, cookies, escaping as rendered) is tests/e2e/test_dashboard_security.py; the
dashboard's routes over HTTP are tests/integration/test_security_dashboard.py.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from crisper.errors import UnknownQueue
from crisper.store.jobs import JobFilter
from tests.harness import Backend
from tests.integration.security_world import (
    ME,
    POISONED_QUEUES,
    THEM,
    World,
    fingerprint,
)

pytestmark = pytest.mark.backends("postgres-redis")


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
