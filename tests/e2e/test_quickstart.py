"""The README's quick start as a user runs it: `crisper up` on the embedded default in an
empty folder, then the CLI against it. No services needed: SQLite and the bundled Valkey."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from crisper.embedded import free_port
from tests.harness import wait_for

ROOT = Path(__file__).resolve().parent.parent.parent


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRISPER_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def crisper(folder: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crisper", *args], cwd=folder, env=clean_env(),
                          capture_output=True, text=True, timeout=timeout)


STOP_SECONDS = 45  # the API, an idle worker's drain and the scheduler, on a loaded machine


@contextmanager
def running_up(folder: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`crisper up` in `folder`, its output in up.log, stopped with Ctrl-C at the end. If it
    does not stop within STOP_SECONDS, its group is killed and the test fails with its log."""
    with (folder / "up.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "crisper", "up", *args], cwd=folder, env=clean_env(),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                tail = (folder / "up.log").read_text()[-4000:]
                pytest.fail(f"crisper up did not stop within {STOP_SECONDS} s:\n{tail}")


def wait_ready(folder: Path, proc: subprocess.Popen[bytes]) -> None:
    wait_for(lambda: "ready." in (folder / "up.log").read_text() or proc.poll() is not None,
             60, "crisper up to start")
    assert proc.poll() is None, (folder / "up.log").read_text()


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Path]:
    """`crisper up` running in an empty folder, stopped with Ctrl-C at the end."""
    with running_up(tmp_path, "--api-port", str(free_port())) as proc:
        wait_ready(tmp_path, proc)
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
    with running_up(tmp_path, "--api-port", "0") as proc:
        wait_ready(tmp_path, proc)
        state = json.loads((tmp_path / ".crisper" / "embedded.json").read_text())

    assert not (tmp_path / ".crisper" / "embedded.json").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(state["pid"], 0)
    leftovers = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""


def test_up_serves_the_api_and_the_dashboard_with_a_local_key(tmp_path: Path) -> None:
    import httpx

    port = free_port()
    with running_up(tmp_path, "--api-port", str(port)):
        text = wait_for(lambda: "CRISPER_API_KEY=" in (tmp_path / "up.log").read_text()
                        and (tmp_path / "up.log").read_text(), 60, "the local key")
        secret = text.split("CRISPER_API_KEY=")[1].split()[0]
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(f"{url}/healthz"), 30, "the API")
        assert f"Dashboard: {url}/dashboard/" in text

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
