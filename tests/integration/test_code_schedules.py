"""Schedules declared in code are synced by the scheduler at start, beside CLI/API ones."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from crisper import ConfigurationError, Crisper, Settings
from crisper.errors import InvalidRequest
from crisper.store.jobs import JobFilter
from tests.api_support import api_server, key
from tests.apps import coded
from tests.harness import ROOT, Backend, wait_for


def app_declaring(settings: Settings, *declared: tuple[str, str, dict[str, str]]) -> Crisper:
    """The coded app as one version of its code: these `coded.ping` schedules, by name."""
    app = Crisper("coded", settings=settings)
    app.job(name="coded.ping")(coded.ping)
    for name, cron, params in declared:
        app.schedule(name, "coded.ping", cron, params)
    return app


def test_a_scheduler_start_adds_changes_and_removes_code_schedules(backend: Backend) -> None:
    # Given version 1 of the code declaring "a" and "b", synced by a scheduler's start, an
    # API-made schedule "ops", and "a" disabled by an operator
    v1 = app_declaring(backend.settings, ("a", "0 1 * * *", {"word": "x"}),
                       ("b", "0 2 * * *", {"word": "y"}))
    v1.maintenance_loop().sync_code_schedules()
    v1.schedules.add("ops", "coded.ping", "0 4 * * *", params={"word": "z"})
    v1.schedules.disable("a")
    first_b = v1.schedules.get("b")

    # When version 2 changes a's params, drops "b", adds "c" and also declares "ops"
    v2 = app_declaring(backend.settings, ("a", "0 1 * * *", {"word": "changed"}),
                       ("c", "*/5 * * * *", {"word": "new"}), ("ops", "0 5 * * *", {"word": "q"}))
    report = v2.schedules.sync_code()

    # Then each change is reported and stored; the API one is kept, as made, and said to clash
    assert (report.added, report.changed, report.removed, report.conflicts) == (
        ["c"], ["a"], ["b"], ["ops"])
    stored = {s.name: s for s in v2.schedules.list_schedules()}
    assert sorted(stored) == ["a", "c", "ops"]
    assert {n: s.source for n, s in stored.items()} == {"a": "code", "c": "code", "ops": "api"}
    assert stored["a"].params == {"word": "changed"} and stored["a"].enabled is False
    assert stored["ops"].cron == "0 4 * * *"
    assert stored["c"].next_fire_at is not None and first_b.source == "code"
    # And a second start with the same code changes nothing
    again = v2.schedules.sync_code()
    assert (again.added, again.changed, again.removed) == ([], [], [])
    # And a code schedule is changed in the code, not through the service (nor the API)
    with pytest.raises(InvalidRequest, match="declared in the app's code"):
        v2.schedules.add("a", "coded.ping", "0 6 * * *", params={"word": "w"}, replace=True)
    with pytest.raises(InvalidRequest, match="declared in the app's code"):
        v2.schedules.remove("c")
    with api_server(v2) as url:
        http = httpx.Client(base_url=url, timeout=30,
                            headers={"Authorization": f"Bearer {key(v2, tenant='default')}"})
        listed = {s["name"]: s["source"] for s in http.get("/v1/schedules").json()}
        refused = http.delete("/v1/schedules/c")
        http.close()
    assert listed == {"a": "code", "c": "code", "ops": "api"}
    assert refused.status_code in (400, 422), refused.text
    for app in (v1, v2):
        app.store.close()


def test_bad_code_schedules_fail_at_import() -> None:
    app = Crisper("t")
    app.job(name="t.ping")(coded.ping)
    with pytest.raises(ConfigurationError, match="bad cron"):
        app.schedule("s", "t.ping", "61 * * * *")
    with pytest.raises(ConfigurationError, match="Nowhere"):
        app.schedule("s", "t.ping", "* * * * *", tz="Nowhere/City")
    app.schedule("s", "t.ping", "* * * * *", {"word": "a"})
    with pytest.raises(ConfigurationError, match="declared twice"):
        app.schedule("s", "t.ping", "* * * * *", {"word": "b"})


@pytest.mark.backends("postgres-redis")
@pytest.mark.timeout(180)
def test_a_scheduler_process_fires_the_schedules_its_app_declares(backend: Backend) -> None:
    # Given an app module declaring a nightly schedule on its decorator and an every-second one
    app = coded.build(backend.settings)

    # When a scheduler process and a worker start with that app
    backend.start_scheduler(CRISPER_APP="tests.apps.coded")
    backend.start_worker(concurrency=1, CRISPER_APP="tests.apps.coded")

    # Then both are stored from code, and the every-second one makes jobs that succeed
    def fired() -> list[object]:
        found = app.jobs.list_jobs(JobFilter(types=["coded.ping"]), limit=50)
        return [j for j in found if j.state.value == "succeeded"]

    wait_for(lambda: len(fired()) >= 2, 120, "two fires of the code schedule", every=0.5)
    stored = {s.name: s for s in app.schedules.list_schedules()}
    assert {n: s.source for n, s in stored.items()} == {
        "coded.every-second": "code", "coded.nightly": "code"}
    assert stored["coded.nightly"].cron == "0 3 * * *"
    assert stored["coded.every-second"].timezone == "Europe/Riga"
    assert all(j.schedule_name == "coded.every-second"  # type: ignore[attr-defined]
               for j in fired())
    app.store.close()


def test_the_cli_lists_where_each_schedule_came_from(backend: Backend) -> None:
    # Given one code schedule synced and one made from the service (as the CLI and API do)
    app = app_declaring(backend.settings, ("from-code", "0 1 * * *", {"word": "x"}))
    app.schedules.sync_code()
    app.schedules.add("from-api", "coded.ping", "0 2 * * *", params={"word": "y"})

    # When the CLI lists them as JSON, Then each says its source
    env = backend.process_env()
    done = subprocess.run([sys.executable, "-m", "crisper", "schedules", "ls", "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    listed = {s["name"]: s["source"] for s in json.loads(done.stdout)["schedules"]}
    assert listed == {"from-code": "code", "from-api": "api"}
    app.store.close()
