"""The HTTP API against real PostgreSQL, Redis and workers: lifecycle, errors, tenants, scopes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from crisper import Client, InvalidTransition, JobNotFound, JobState, Settings
from crisper.api import create_app
from crisper.errors import AccessDenied, InvalidParams, UnknownJobType
from tests.api_support import api_server, key, other_app, serve
from tests.harness import ROOT, Backend, wait_for

S = JobState
pytestmark = pytest.mark.backends("postgres-redis")


@dataclass
class Api:
    url: str
    backend: Backend
    secret: str  # tenant "acme", every scope
    opened: list[Client] = field(default_factory=list)

    def client(self, secret: str | None = None) -> Client:
        self.opened.append(Client(self.url, secret if secret is not None else self.secret))
        return self.opened[-1]

    def http(self, secret: str | None = None) -> httpx.Client:
        s = secret if secret is not None else self.secret
        headers = {"Authorization": f"Bearer {s}"} if s else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture
def api(backend: Backend) -> Iterator[Api]:
    # Queues some tests submit to besides the probe types' own (a submit names declared ones)
    crisper = backend.app_with(queues=["other", "nobody-listens"])
    with api_server(crisper) as url:
        api = Api(url, backend, key(backend.app))
        yield api
        for client in api.opened:
            client.close()


def problem_of(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, object] = response.json()
    assert body["status"] == status and isinstance(body["detail"], str) and body["detail"]
    return body


def test_full_lifecycle_through_http_with_a_real_worker(api: Api) -> None:
    # Given a worker and a client with a write key
    api.backend.start_worker()
    with api.client() as client, api.http() as http:
        # When a job is submitted, it is accepted with 202 and a Location
        r = http.post("/v1/jobs",
                      json={"type": "probe.echo", "params": {"number": 7, "text": "hi"}})
        assert r.status_code == 202 and r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
        job_id = r.json()["id"]
        assert r.json()["links"]["cancel"] == f"/v1/jobs/{job_id}/cancel"
        # Then it runs to success, with history and logs readable over HTTP
        done = client.wait(job_id, timeout=30)
        assert done.state is S.SUCCEEDED and done.result == {"number": 7, "text": "hi"}
        body = http.get(f"/v1/jobs/{job_id}").json()
        assert body["attempt"] == 1 and body["max_attempts"] == 1 and body["tenant"] == "acme"
        assert body["started_at"] and body["finished_at"] and body["progress"]["percent"] is None
        assert [(e.from_state, e.to_state) for e in client.events(job_id)] == [
            (None, "queued"), ("queued", "running"), ("running", "succeeded")]
        assert [line.message for line in client.logs(job_id)] == ["echo 7 hi"]

        # A held job waits until started (202), and starting it twice is a 409 with a sentence
        held = client.submit("probe.noop", hold=True)
        assert held.state is S.HELD
        r = http.post(f"/v1/jobs/{held.id}/start")
        assert r.status_code == 202
        assert client.wait(held.id, timeout=30).state is S.SUCCEEDED
        conflict = problem_of(http.post(f"/v1/jobs/{held.id}/start"), 409)
        assert conflict["detail"] == f"job {held.id} is succeeded; only held jobs can be started"
        with pytest.raises(InvalidTransition, match="only held jobs"):
            client.start(held.id)

        # A running job asked to cancel answers 202 and then stops for real
        sleeper = client.submit("probe.sleep", {"seconds": 60})
        wait_for(lambda: client.get(sleeper.id).state is S.RUNNING, 30, "the sleeper to run")
        r = http.post(f"/v1/jobs/{sleeper.id}/cancel")
        assert r.status_code == 202 and r.json()["cancel_requested_at"]
        assert client.wait(sleeper.id, timeout=30).state is S.CANCELLED

        # A failed job can be retried (202) and its error is in the representation
        failed = client.wait(client.submit("probe.fatal").id, timeout=30)
        assert failed.state is S.FAILED
        error = http.get(f"/v1/jobs/{failed.id}").json()["error"]
        assert error["type"] == "KeyError" and "never retried" in error["message"]
        assert "Traceback" in error["traceback"]
        assert http.post(f"/v1/jobs/{failed.id}/retry").status_code == 202
        assert client.wait(failed.id, timeout=30).attempt == 1
        # and replayed with edited params, which its type checks first
        problem_of(http.post(f"/v1/jobs/{failed.id}/retry", json={"params": {"x": 1}}), 422)
        echoed = client.wait(client.submit("probe.echo", {"number": 1}).id, timeout=30)
        r = http.post(f"/v1/jobs/{echoed.id}/retry", json={"params": {"number": 5}})
        assert r.status_code == 202 and r.json()["params"] == {"number": 5, "text": ""}
        assert client.wait(echoed.id, timeout=30).result == {"number": 5, "text": ""}
        # the Python client replays with edited params too, checked the same way
        assert client.retry(echoed.id, {"number": 6, "text": "b"}).params["number"] == 6
        assert client.wait(echoed.id, timeout=30).result == {"number": 6, "text": "b"}
        with pytest.raises(InvalidParams):
            client.retry(echoed.id, {"number": "six"})

        # A waiting job is cancelled at once (200)
        later = client.submit("probe.noop", delay="1h")
        assert later.state is S.SCHEDULED
        r = http.post(f"/v1/jobs/{later.id}/cancel")
        assert r.status_code == 200 and r.json()["state"] == "cancelled"


def test_idempotency_key_replays_the_first_job_with_200(api: Api) -> None:
    with api.http() as http:
        once = {"Idempotency-Key": "k1"}
        first = http.post("/v1/jobs", json={"type": "probe.noop"}, headers=once)
        again = http.post("/v1/jobs", json={"type": "probe.noop"}, headers=once)
        field = http.post("/v1/jobs", json={"type": "probe.noop", "idempotency_key": "k1"})
        assert (first.status_code, again.status_code, field.status_code) == (202, 200, 200)
        assert first.json()["id"] == again.json()["id"] == field.json()["id"]
        both = http.post("/v1/jobs", json={"type": "probe.noop", "idempotency_key": "k1"},
                         headers={"Idempotency-Key": "other"})
        assert both.status_code == 200 and both.json()["id"] == first.json()["id"]


def test_each_error_case_is_problem_json(api: Api) -> None:
    with api.http() as http:
        bad = problem_of(http.post("/v1/jobs", json={"type": "probe.echo",
                                                     "params": {"number": "seven"}}), 422)
        assert bad["errors"][0]["loc"] == ["params", "number"]  # type: ignore[index]
        assert "number" in str(bad["detail"])
        unknown = problem_of(http.post("/v1/jobs", json={"type": "probe.ecko"}), 422)
        assert "probe.echo" in unknown["known_types"]  # type: ignore[operator]
        assert "known: " in str(unknown["detail"])
        problem_of(http.post("/v1/jobs", content=b'{"type": ', headers={
            "content-type": "application/json"}), 400)
        huge = {"type": "probe.echo", "params": {"number": 1, "text": "x" * (1024 * 1024)}}
        too_big = problem_of(http.post("/v1/jobs", json=huge), 413)
        assert "limit" in str(too_big["detail"])
        problem_of(http.post("/v1/jobs", json={"type": "probe.noop", "priority": 256}), 422)
        problem_of(http.post("/v1/jobs", json={"type": "probe.noop", "delay": "5m"}), 422)
        missing = problem_of(http.get("/v1/jobs/01a20000-0000-7000-8000-000000000000"), 404)
        assert "not found" in str(missing["detail"])
        problem_of(http.get("/v1/jobs/not-a-uuid"), 404)
        problem_of(http.get("/v1/no-such-thing"), 404)
        problem_of(http.delete("/v1/jobs"), 405)
        problem_of(http.get("/v1/jobs", params={"state": "sleeping"}), 422)
        problem_of(http.post("/v1/jobs/cancel", json={"filter": {}}), 422)
    with pytest.raises(InvalidParams), api.client() as client:
        client.submit("probe.echo", {"number": "x"})
    with pytest.raises(UnknownJobType), api.client() as client:
        client.submit("nope")


def test_a_chunked_body_over_the_limit_is_refused(api: Api) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"type": "probe.noop", "params": {}, "tags": ["'
        for _ in range(1100):
            yield b"x" * 1024
        yield b'"]}'

    with api.http() as http:
        r = http.post("/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
        problem_of(r, 413)


def test_a_database_outage_is_a_503_with_a_sentence(backend: Backend) -> None:
    # Given an API whose database URL points where nothing listens
    settings = Settings(database_url="postgresql://postgres@127.0.0.1:1/test",
                        broker_url=backend.broker_url(), broker_prefix="outage:")
    with other_app(settings) as crisper, serve(create_app(crisper)) as url, \
            httpx.Client(base_url=url, timeout=30) as http:
        # When a client calls it, it answers 503 naming the database, never a stack trace
        body = problem_of(http.get("/v1/jobs", headers={"Authorization": "Bearer x"}), 503)
        assert str(body["detail"]).startswith("the database is unavailable")
        assert "Traceback" not in str(body)
        ready = problem_of(http.get("/readyz"), 503)
        assert ready["checks"]["broker"] == "ok"  # type: ignore[index]
        assert ready["checks"]["database"] != "ok"  # type: ignore[index]
        assert http.get("/healthz").status_code == 200


def test_readyz_names_an_unreachable_broker(backend: Backend) -> None:
    settings = Settings(database_url=backend.env["CRISPER_DATABASE_URL"],
                        broker_url="redis://127.0.0.1:1/0")
    with other_app(settings) as crisper, serve(create_app(crisper)) as url:
        body = problem_of(httpx.get(f"{url}/readyz", timeout=30), 503)
        assert "broker" in str(body["detail"]) and "database" not in str(body["detail"])
    with api_server(backend.app) as url:
        assert httpx.get(f"{url}/readyz", timeout=30).json()["checks"] == {
            "database": "ok", "broker": "ok"}


def test_tenants_see_only_their_own_jobs_on_every_endpoint(api: Api) -> None:
    # Given a job of tenant acme, and a key of tenant globex with every scope
    mine = api.client().submit("probe.noop", hold=True, tags=["t1"])
    other = key(api.backend.app, tenant="globex")
    with api.http(other) as http:
        # Then every per-job endpoint answers 404 to globex, exactly as for a missing id
        for method, path in [("GET", ""), ("GET", "/events"), ("GET", "/logs"),
                             ("GET", "/stream"), ("POST", "/cancel"), ("POST", "/retry"),
                             ("POST", "/start")]:
            problem_of(http.request(method, f"/v1/jobs/{mine.id}{path}"), 404)
        # Lists and bulk actions do not reach it either
        assert http.get("/v1/jobs").json()["items"] == []
        assert http.get("/v1/jobs", params={"tag": "t1"}).json()["items"] == []
        assert http.post("/v1/jobs/cancel", json={"ids": [str(mine.id)]}).json()["matched"] == 0
        assert http.post("/v1/jobs/cancel", json={"filter": {"states": ["held"]}}
                         ).json()["matched"] == 0
        # The same idempotency key in another tenant is another job
        a = api.client().submit_ex("probe.noop", idempotency_key="same")
        b = http.post("/v1/jobs", json={"type": "probe.noop", "idempotency_key": "same"})
        assert b.status_code == 202 and b.json()["id"] != str(a.job.id)
    assert api.client().get(mine.id).state is S.HELD
    with pytest.raises(JobNotFound), Client(api.url, other) as c:
        c.get(mine.id)


def test_scopes_are_enforced(api: Api) -> None:
    app = api.backend.app
    reader, writer = key(app, scopes="read"), key(app, scopes="write")
    job = api.client().submit("probe.noop", hold=True)
    with api.http(reader) as http:
        assert http.get(f"/v1/jobs/{job.id}").status_code == 200
        assert http.get("/v1/types").status_code == 200
        body = problem_of(http.post("/v1/jobs", json={"type": "probe.noop"}), 403)
        assert body["scope"] == "write" and "crisper keys create" in str(body["detail"])
        problem_of(http.post(f"/v1/jobs/{job.id}/cancel"), 403)
        problem_of(http.post("/v1/jobs/retry", json={"ids": [str(job.id)]}), 403)
        problem_of(http.get("/v1/workers"), 403)
        problem_of(http.get("/v1/queues"), 403)
    with api.http(writer) as http:
        assert http.post("/v1/jobs", json={"type": "probe.noop"}).status_code == 202
        problem_of(http.get(f"/v1/jobs/{job.id}"), 403)
    with api.http("") as http:
        no_key = http.get("/v1/jobs")
        problem_of(no_key, 401)
        assert no_key.headers["www-authenticate"] == "Bearer"
        assert http.get("/healthz").status_code == 200
        assert http.get("/metrics").status_code == 200
    with api.http("crisper_wrong") as http:
        problem_of(http.get("/v1/jobs"), 401)
    with pytest.raises(AccessDenied), Client(api.url, reader) as c:
        c.submit("probe.noop")


def test_metrics_can_require_an_admin_key(backend: Backend) -> None:
    settings = backend.settings.model_copy(update={"metrics_require_key": True})
    with other_app(settings) as crisper, serve(create_app(crisper)) as url:
        problem_of(httpx.get(f"{url}/metrics", timeout=30), 401)
        reader = key(crisper, scopes="read")
        admin = key(crisper, scopes="admin")
        problem_of(httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {reader}"}), 403)
        ok = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {admin}"})
        assert ok.status_code == 200 and "crisper_queue_depth" in ok.text


def test_list_filters_and_cursor_pagination(api: Api) -> None:
    with api.client() as client, api.http() as http:
        ids = [client.submit("probe.noop", hold=True, tags=["batch"]).id for _ in range(5)]
        echo = client.submit("probe.echo", {"number": 1}, hold=True, queue="other")
        page1 = http.get("/v1/jobs", params={"limit": 2, "type": "probe.noop"}).json()
        assert [j["id"] for j in page1["items"]] == [str(i) for i in ids[::-1][:2]]
        page2 = http.get(page1["next"]).json()
        assert [j["id"] for j in page2["items"]] == [str(i) for i in ids[::-1][2:4]]
        assert http.get("/v1/jobs", params={"queue": "other"}).json()["items"][0]["id"] == str(
            echo.id)
        several = http.get("/v1/jobs", params=[("state", "held"), ("state", "queued")]).json()
        assert len(several["items"]) == 6 and several["next"] is None
        assert len(client.list_jobs(tag="batch")) == 5
        assert http.get("/v1/jobs", params={"finished_after": "2000-01-01T00:00:00Z"}
                        ).json()["items"] == []
        # Bulk by ids and by filter answer counts
        r = http.post("/v1/jobs/cancel", json={"ids": [str(ids[0]), str(ids[1])]}).json()
        assert (r["matched"], r["changed"], r["skipped"]) == (2, 2, 0)
        r = http.post("/v1/jobs/cancel", json={"filter": {"types": ["probe.noop"]}}).json()
        assert (r["matched"], r["changed"], r["skipped"]) == (5, 3, 2)
        assert all("only" in why for why in r["errors"].values())
        r = http.post("/v1/jobs/retry", json={"filter": {"states": ["cancelled"]}}).json()
        assert (r["matched"], r["changed"]) == (5, 5)


def test_types_queues_and_workers(api: Api) -> None:
    api.backend.start_worker(concurrency=2)
    with api.http() as http:
        types = {t["name"]: t for t in http.get("/v1/types").json()}
        echo = types["probe.echo"]["params"]
        assert echo["properties"]["number"]["type"] == "integer" and echo["required"] == ["number"]
        client = api.client()
        sleeper = client.submit("probe.sleep", {"seconds": 30})
        wait_for(lambda: client.get(sleeper.id).state is S.RUNNING, 30, "the sleeper to run")
        client.submit("probe.noop", queue="nobody-listens")
        workers = http.get("/v1/workers").json()
        assert len(workers) == 1
        w = workers[0]
        assert w["status"] == "alive" and w["concurrency"] == 2 and w["pid"] > 0
        assert w["running_jobs"] == [str(sleeper.id)] and "default" in w["queues"]
        queues = {q["name"]: q for q in http.get("/v1/queues").json()}
        assert queues["default"]["running"] == 1
        assert queues["nobody-listens"]["depth"] == 1
        assert queues["nobody-listens"]["oldest_waiting_seconds"] >= 0
        client.cancel(sleeper.id)
        client.wait(sleeper.id, timeout=30)
        assert http.get("/v1/queues").json()[0]["throughput_last_minute"] >= 1
        metrics = http.get("/metrics").text
        assert 'crisper_queue_depth{queue="nobody-listens"} 1.0' in metrics
        assert 'crisper_jobs_finished_recent{state="cancelled",type="probe.sleep"} 1.0' in metrics
        assert "crisper_job_duration_seconds_bucket" in metrics
        assert "crisper_lease_rescues_recent 0.0" in metrics


def test_a_worker_that_stops_heartbeating_is_shown_as_lost(api: Api) -> None:
    worker = api.backend.start_worker()
    settings = api.backend.settings.model_copy(update={"worker_lost_after_seconds": 2.0})
    with other_app(settings) as crisper, serve(create_app(crisper)) as url:
        worker.kill()
        status = lambda: httpx.get(f"{url}/v1/workers",  # noqa: E731
                                   headers={"Authorization": f"Bearer {api.secret}"}).json()
        wait_for(lambda: status()[0]["status"] == "lost", 30, "the worker to be shown as lost")


def test_keys_cli_and_remote_cli_mode(api: Api) -> None:
    env = api.backend.process_env()
    run = lambda *args, **extra: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "crisper", *args], cwd=ROOT, env={**env, **extra},
        capture_output=True, text=True, timeout=60)
    created = run("keys", "create", "--tenant", "remote", "--scopes", "read,write", "--json")
    assert created.returncode == 0, created.stderr
    new = json.loads(created.stdout)
    assert new["key"].startswith("crisper_") and new["id"].startswith("key_")
    assert new["scopes"] == ["read", "write"]
    listed = run("keys", "ls", "--json")
    assert new["id"] in listed.stdout and new["key"] not in listed.stdout
    # The job commands go to the server: the database URL they would use locally is unreachable
    remote = {"CRISPER_URL": api.url, "CRISPER_API_KEY": new["key"],
              "CRISPER_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"}
    submitted = run("submit", "probe.noop", "--hold", "--json", **remote)
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    assert job["tenant"] == "remote" and job["state"] == "held"
    shown = run("jobs", "ls", "--json", **remote)
    assert [j["id"] for j in json.loads(shown.stdout)] == [job["id"]]
    assert run("jobs", "start", job["id"], **remote).returncode == 0
    assert run("jobs", "start", job["id"], **remote).returncode == 6
    assert run("jobs", "show", "01a20000-0000-7000-8000-000000000000", **remote).returncode == 5
    assert "probe.echo" in run("types", **remote).stdout
    # Revoked: refused, once the server's memory of the verified key has lapsed (its bound)
    assert run("keys", "revoke", new["id"]).returncode == 0
    time.sleep(api.backend.settings.api_key_cache_seconds)
    refused = run("jobs", "ls", **remote)
    assert refused.returncode == 9 and "revoked" in refused.stderr
    assert run("keys", "revoke", "key_nope").returncode == 5
