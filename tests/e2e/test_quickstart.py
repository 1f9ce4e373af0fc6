"""The README's quick start as a user runs it: `crisper up` on the embedded default in an
empty folder, then the CLI against it. No services needed: SQLite and the bundled Valkey."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from crisper.embedded import free_port
from tests.e2e.up_process import UP, Up, clean_env
from tests.harness import wait_for


def crisper(folder: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*UP, *args], cwd=folder, env=clean_env(),
                          capture_output=True, text=True, timeout=timeout)


STOP_SECONDS = 45  # the API, an idle worker's drain and the scheduler, on a loaded machine


@contextmanager
def interrupted_at_end(folder: Path, *args: str) -> Iterator[Up]:
    """`crisper up` in `folder` on its default home, stopped with Ctrl-C at the end."""
    up = Up(folder, None, *args)
    try:
        yield up
    finally:
        up.interrupt(STOP_SECONDS)


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Path]:
    """`crisper up` running in an empty folder, stopped with Ctrl-C at the end."""
    with interrupted_at_end(tmp_path, "--api-port", str(free_port())) as instance:
        instance.wait_ready(60)
        yield tmp_path


def test_up_runs_the_demo_jobs_on_the_embedded_default(up: Path) -> None:
    # Given `crisper up` in an empty folder: its files are under ./.crisper/
    assert (up / ".crisper" / "crisper.db").exists()
    assert (up / ".crisper" / "embedded.json").exists()

    # When a user submits demo jobs from another terminal, the exit codes tell how they ended
    done = crisper(up, "submit", "demo.countdown", "seconds=2", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["state"] == "succeeded" and job["result"] == {"counted": 2}
    assert job["progress"]["percent"] == 100.0

    assert crisper(up, "submit", "demo.fail", "--wait").returncode == 1
    # and replays a finished job with one param edited: the others stay as they were
    replay = crisper(up, "jobs", "retry", job["id"], "seconds=1", "--json")
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout)["params"] == {"seconds": 1}
    wait_for(lambda: json.loads(crisper(up, "jobs", "show", job["id"], "--json").stdout)
             ["result"] == {"counted": 1}, 30, "the replay with seconds=1")
    assert crisper(up, "jobs", "retry", job["id"], "seconds=soon").returncode == 2
    assert crisper(up, "submit", "demo.countdown", "seconds=soon").returncode == 2
    missing = crisper(up, "jobs", "show", "01a20000-0000-7000-8000-000000000000")
    assert missing.returncode == 5 and "not found" in missing.stderr

    stubborn = crisper(up, "submit", "demo.stubborn", "seconds=600").stdout.split()[0]
    wait_for(lambda: json.loads(crisper(up, "jobs", "show", stubborn, "--json").stdout)["state"]
             == "running", 30, "the stubborn job to run")
    assert crisper(up, "jobs", "cancel", stubborn).returncode == 0

    # Then the history is there to read, and the cancelled job ends cancelled
    wait_for(lambda: json.loads(crisper(up, "jobs", "show", stubborn, "--json").stdout)["state"]
             == "cancelled", 40, "the forced cancel")
    listing = json.loads(crisper(up, "jobs", "ls", "--json", "--limit", "10").stdout)
    assert {j["type"] for j in listing} == {"demo.countdown", "demo.fail", "demo.stubborn"}
    events = crisper(up, "jobs", "events", stubborn).stdout
    assert "cancel_requested" in events and "cancel_forced" in events


def test_stopping_up_stops_everything_it_started(tmp_path: Path) -> None:
    with interrupted_at_end(tmp_path, "--api-port", "0") as up:
        up.wait_ready(60)
        broker = up.broker_pid()

    assert not (tmp_path / ".crisper" / "embedded.json").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(broker, 0)
    leftovers = subprocess.run(["pgrep", "-g", str(up.pid)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""


def test_up_serves_the_api_and_the_dashboard_with_a_local_key(tmp_path: Path) -> None:
    import httpx

    port = free_port()
    with interrupted_at_end(tmp_path, "--api-port", str(port)) as up:
        secret = up.local_key(60)
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(f"{url}/healthz"), 30, "the API")
        assert f"Dashboard: {url}/dashboard/" in up.log

        root = httpx.get(url + "/", follow_redirects=False)
        jobs = httpx.get(url + "/v1/jobs", headers={"Authorization": f"Bearer {secret}"})
        anonymous = httpx.get(url + "/v1/jobs")

    assert root.status_code == 307 and root.headers["location"] == "/dashboard/"
    assert jobs.status_code == 200
    assert anonymous.status_code == 401


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
