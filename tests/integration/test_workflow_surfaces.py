"""Workflows from the outside: the HTTP API, the dashboard's graph page and the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from crisper import Crisper
from crisper.dashboard.session import SESSION_COOKIE, new_session
from tests.api_support import api_server, key
from tests.apps import graph
from tests.harness import ROOT, Backend, wait_for

pytestmark = pytest.mark.backends("postgres-redis")
APP = {"CRISPER_APP": "tests.apps.graph"}
SPEC = {
    "name": "api-made",
    "nodes": [
        {"name": "a", "type": "graph.square", "params": {"n": 3}},
        {"name": "b", "type": "graph.square", "params": {"n": 4, "fail": True}, "after": ["a"]},
        {"name": "c", "type": "graph.join", "after": [{"node": "a", "receive": True},
                                                      {"node": "b", "on_failure": "run"}]},
    ],
}


@pytest.fixture
def app(backend: Backend) -> Iterator[Crisper]:
    crisper = graph.build(backend.settings)
    yield crisper
    crisper.store.close()


def test_the_api_creates_reads_retries_and_cancels_a_workflow(backend: Backend,
                                                              app: Crisper) -> None:
    backend.start_worker(**APP)
    with api_server(app) as root:
        auth = {"Authorization": f"Bearer {key(app)}"}
        made = httpx.post(f"{root}/v1/workflows", json=SPEC, headers=auth)
        assert made.status_code == 202, made.text
        wid = made.json()["id"]
        assert made.json()["counts"] == {"queued": 1, "waiting": 2}

        def ended() -> dict[str, object] | None:
            body: dict[str, object] = httpx.get(f"{root}/v1/workflows/{wid}", headers=auth).json()
            return body if body["status"] not in ("running", "cancelling") else None

        body = wait_for(ended, 120, "the workflow to end")
        states = {n["node"]: n["state"] for n in body["nodes"]}
        assert states == {"a": "succeeded", "b": "failed", "c": "succeeded"}
        assert {(e["parent"], e["child"], e["on_failure"], e["receive"])
                for e in body["edges"]} == {("a", "b", "fail", False), ("a", "c", "fail", True),
                                            ("b", "c", "run", False)}
        c = next(n for n in body["nodes"] if n["node"] == "c")
        c_job = httpx.get(f"{root}{c['link']}", headers=auth).json()
        assert c_job["result"]["parents"] == ["a"]
        assert (c_job["workflow_id"], c_job["workflow_node"]) == (wid, "c")
        b = next(n for n in body["nodes"] if n["node"] == "b")
        assert httpx.get(f"{root}{b['link']}", headers=auth).json()["error"]["type"] == "ValueError"

        # an edited retry of b, then its downstream c reruns
        again = httpx.post(f"{root}/v1/workflows/{wid}/retry", headers=auth,
                           json={"node": "b", "params": {"n": 4}})
        assert again.status_code == 200, again.text
        body = wait_for(ended, 120, "the retried workflow to end")
        assert body["status"] == "succeeded"
        assert httpx.post(f"{root}/v1/workflows/{wid}/retry", headers=auth).status_code == 409

        listed = httpx.get(f"{root}/v1/workflows", headers=auth).json()
        assert [w["id"] for w in listed] == [wid]
        assert httpx.get(f"{root}/v1/workflows/{wid}",
                         headers={"Authorization": f"Bearer {key(app, 'other')}"}
                         ).status_code == 404
        bad = httpx.post(f"{root}/v1/workflows", headers=auth, json={
            "name": "loop", "nodes": [{"name": "x", "type": "graph.square", "params": {"n": 1},
                                       "after": ["y"]},
                                      {"name": "y", "type": "graph.square", "params": {"n": 1},
                                       "after": ["x"]}]})
        assert bad.status_code == 422 and "cycle" in bad.json()["detail"]


NODE_LINK = re.compile(r'<a href="/dashboard/jobs/([0-9a-f-]{36})" data-node-id')


def test_the_dashboard_draws_the_graph_linking_each_node_to_its_job(
        backend: Backend, app: Crisper) -> None:
    wf = app.workflow("drawn")
    root_node = wf.add("graph.square", {"n": 1}, name="root")
    wf.map("graph.square", [{"n": i} for i in range(3)], name="sq", after=root_node)
    view = wf.submit(tenant="acme")
    with api_server(app) as root:
        cookies = {SESSION_COOKIE: new_session(key(app)).encode()}
        page = httpx.get(f"{root}/dashboard/workflows/{view.id}", cookies=cookies)
        live = httpx.get(f"{root}/dashboard/live/workflows/{view.id}", cookies=cookies)
        listing = httpx.get(f"{root}/dashboard/workflows", cookies=cookies)
    assert page.status_code == 200, page.text[:500]
    assert "<svg" in page.text and page.text.count('class="wf-edge"') == 3
    linked = set(NODE_LINK.findall(page.text))
    nodes = app.workflows.get(view.id).nodes
    assert linked == {str(n.id) for n in nodes}
    assert {n["state"] for n in live.json()["nodes"]} == {"queued", "waiting"}
    assert str(view.id) in listing.text


def test_the_cli_lists_shows_and_cancels_workflows(backend: Backend, app: Crisper) -> None:
    wf = app.workflow("from-cli")
    wf.add("graph.square", {"n": 2}, name="only", after=wf.add("graph.square", {"n": 1}))
    view = wf.submit()
    env = {**backend.process_env(), **APP}

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "crisper", "workflows", *args], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert [w["name"] for w in json.loads(cli("ls", "--json"))] == ["from-cli"]
    shown = json.loads(cli("show", str(view.id), "--json"))
    assert {n["node"]: n["state"] for n in shown["nodes"]} == {"graph.square": "queued",
                                                               "only": "waiting"}
    assert "cancelled" in cli("cancel", str(view.id))
    assert app.workflows.get(view.id).counts == {"cancelled": 2}

    # one node again, with an edited param: it alone reruns (its parent stays cancelled)
    cli("retry", str(view.id), "--node", "only", "-p", "n=5")
    again = app.workflows.get(view.id)
    assert (again.node("only").state.value, again.node("only").params["n"]) == ("queued", 5)
    assert again.node("graph.square").state.value == "cancelled"
