"""A submit's own soft and hard time limits, replacing its type's: Python, HTTP, CLI, worker."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from crisper import Crisper, JobState
from crisper.errors import InvalidRequest
from tests.api_support import api_server, key
from tests.apps import limited
from tests.harness import ROOT, Backend, wait_for

pytestmark = pytest.mark.backends("postgres-redis")
LIMITED = {"CRISPER_APP": "tests.apps.limited"}


@pytest.fixture
def app(backend: Backend) -> Iterator[Crisper]:
    crisper = limited.build(backend.settings)
    yield crisper
    crisper.store.close()


def marks(backend: Backend, job_id: object) -> dict[str, float]:
    return {r.event: r.at for r in backend.probe_rows() if r.job_id == str(job_id)}


@pytest.mark.timeout(150)
def test_a_submits_hard_limit_kills_the_running_job_at_that_limit(
        backend: Backend, app: Crisper) -> None:
    # Given a type whose own limits are 1 h / 2 h and whose body swallows its soft limit, and
    # jobs of it sent in one batch with one that has no limits of its own
    worker = backend.start_worker(concurrency=1, **LIMITED)
    plain = app.submit("lim.lenient", {"seconds": 4.0})

    # When one job of it is submitted with 1 s / 3 s
    job = app.submit("lim.lenient", {}, soft_time_limit="1s", time_limit=3)

    # Then the job carries its limits, the soft one strikes at 1 s and the worker kills its
    # process at 3 s (not at the type's 2 h)
    stored = app.jobs.get(job.id)
    assert (stored.timeout, stored.hard_timeout) == (1.0, 3.0)
    wait_for(lambda: re.search(r"Hard time limit \(3(\.0)?s\) exceeded for lim\.lenient",
                               worker.output()), 90, "the submit's hard limit to strike")
    seen = marks(backend, job.id)
    assert seen["soft"] - seen["start"] == pytest.approx(1.0, abs=0.6)
    assert "survived" not in seen
    # And the job without limits of its own kept the type's: it ran its 4 s untouched
    wait_for(lambda: app.jobs.get(plain.id).state is JobState.SUCCEEDED, 60, "the plain job")
    assert "survived" in marks(backend, plain.id)
    assert (app.jobs.get(plain.id).timeout, app.jobs.get(plain.id).hard_timeout) == (3600.0, None)


@pytest.mark.timeout(150)
def test_a_submits_soft_limit_stops_a_job_of_a_type_without_limits(
        backend: Backend, app: Crisper) -> None:
    # Given a type with no time limit at all (its jobs are batched several to a message)
    backend.start_worker(concurrency=1, **LIMITED)

    # When one of its 30-second jobs is submitted with a 1 s soft limit
    job = app.submit("lim.deaf", {"seconds": 30.0}, soft_time_limit=1)

    # Then it ends failed by that limit about a second after it started, not 30 s later
    done = job.wait(timeout=90)
    record = app.jobs.get(done.id)
    assert record.state is JobState.FAILED and record.error is not None
    assert record.error["type"] == "SoftTimeLimitExceeded"
    assert record.started_at is not None and record.finished_at is not None
    assert (record.finished_at - record.started_at).total_seconds() < 10
    assert [e.reason for e in app.jobs.events(job.id)][-1] == "timeout"
    assert (record.timeout, record.hard_timeout) == (1.0, 31.0)  # + the app's 30 s kill grace


def test_http_submits_take_their_own_limits_and_refuse_bad_ones(app: Crisper) -> None:
    # Given the limited app over HTTP
    with api_server(app) as url:
        http = httpx.Client(base_url=url, timeout=30,
                            headers={"Authorization": f"Bearer {key(app)}"})
        # When jobs are submitted with limits: both, soft only, and bad pairs
        both = http.post("/v1/jobs", json={"type": "lim.deaf", "hold": True,
                                           "soft_time_limit": "1h55m", "time_limit": 7200})
        soft = http.post("/v1/jobs", json={"type": "lim.lenient", "hold": True,
                                           "soft_time_limit": 60})
        early = http.post("/v1/jobs", json={"type": "lim.deaf", "soft_time_limit": "10m",
                                            "time_limit": "5m"})
        huge = http.post("/v1/jobs", json={"type": "lim.deaf", "time_limit": "30d"})
        read = http.get(f"/v1/jobs/{both.json()['id']}")
        http.close()

    # Then the job shows them (soft alone: its type's 1 h grace follows it), and the bad
    # ones are 422s naming the field
    assert both.status_code == 202
    assert (read.json()["timeout"], read.json()["hard_timeout"]) == (6900.0, 7200.0)
    assert (soft.json()["timeout"], soft.json()["hard_timeout"]) == (60.0, 3660.0)
    assert early.status_code == 422 and "time_limit" in early.text
    assert huge.status_code == 422 and "at most" in huge.text


def test_python_refuses_bad_limits_and_a_param_named_like_them(app: Crisper) -> None:
    with pytest.raises(InvalidRequest) as refused:
        app.submit("lim.deaf", {}, soft_time_limit="2m", time_limit="1m")
    assert refused.value.field == "time_limit"
    with pytest.raises(InvalidRequest):
        app.submit("lim.deaf", {}, time_limit=0)


def test_the_cli_submits_with_its_own_limits(backend: Backend, app: Crisper) -> None:
    # Given the limited app's environment
    env = {**backend.process_env(), **LIMITED}

    def submit(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "crisper", "submit", "lim.deaf", "--hold",
                               "--json", *args], cwd=ROOT, env={**env, **extra},
                              capture_output=True, text=True, timeout=60)

    # When the CLI submits with limits, on the database and through the API, and with a
    # hard limit before the soft one
    done = submit("--soft-time-limit", "10m", "--time-limit", "12m")
    with api_server(app) as url:
        remote = submit("--soft-time-limit", "90s", "--time-limit", "2m", CRISPER_URL=url,
                        CRISPER_API_KEY=key(app))
    bad = submit("--soft-time-limit", "10m", "--time-limit", "1m")

    # Then the jobs hold them, and the bad pair exits 2 naming the option's field
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert (job["timeout"], job["hard_timeout"]) == (600.0, 720.0)
    assert app.jobs.get(job["id"]).hard_timeout == 720.0
    assert remote.returncode == 0, remote.stderr
    assert app.jobs.get(json.loads(remote.stdout)["id"]).hard_timeout == 120.0
    assert bad.returncode == 2 and "time_limit" in bad.stderr + bad.stdout
