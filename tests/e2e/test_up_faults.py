"""The embedded default under faults, run as a user runs it: `crisper up` in its own folder.

Its broker is killed, it is stopped with a long job running, a second copy is started beside
it, it is started from a non-interactive shell, and its disk fills up (a small tmpfs).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crisper.embedded import free_port
from crisper.errors import StoreUnavailable
from tests.conftest import IN_CI
from tests.e2e.up_process import (
    UP,
    clean_env,
    kill_processes_in,
    pid_running,
    processes_in,
    running,
)
from tests.harness import fill_disk, small_tmpfs, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a disk that really fills up."""
    with small_tmpfs(tmp_path / "disk", "4m", required=IN_CI) as disk:
        try:
            yield disk
        finally:
            kill_processes_in(disk / "home")


def run_and_clean_up(command: list[str], folder: Path,
                     env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command that should end by itself; kill what it left running if it did not."""
    proc = subprocess.Popen(command, cwd=folder, env=env or clean_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=90)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def test_a_killed_embedded_broker_is_restarted_and_jobs_go_on(tmp_path: Path) -> None:
    with running(tmp_path, tmp_path / ".crisper", "--api-port", "0") as up:
        # Given a running `crisper up` whose bundled Valkey dies
        first = up.broker_pid()
        os.kill(first, signal.SIGKILL)

        # Then `up` notices, reaps it and starts it again on the same port
        wait_for(lambda: "the embedded broker was restarted" in up.log, 30, "a broker restart")
        assert "the embedded broker exited" in up.log
        assert not pid_running(first)  # reaped, not a zombie
        assert up.broker_pid() != first and pid_running(up.broker_pid())

        # And a job submitted afterwards runs to the end on the reconnected worker
        done = up.cli("submit", "demo.countdown", "seconds=1", "--wait", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["state"] == "succeeded"
        assert up.alive()


def test_a_killed_up_leaves_nothing_running(tmp_path: Path) -> None:
    with running(tmp_path, tmp_path / ".crisper", "--api-port", "0") as up:
        broker = up.broker_pid()
        children = [int(p) for p in subprocess.run(
            ["pgrep", "-P", str(up.pid)], capture_output=True, text=True).stdout.split()]
        assert broker in children and len(children) >= 3

        # When only `crisper up` itself is SIGKILLed (the OOM killer picks one process)
        os.kill(up.pid, signal.SIGKILL)

        # Then its broker, worker and scheduler stop too
        wait_for(lambda: not any(pid_running(pid) for pid in children), 60, "the children to stop")


def test_a_graceful_stop_lets_a_long_job_finish_within_the_drain(tmp_path: Path) -> None:
    # (the default drain is 60 s)
    with running(tmp_path, tmp_path / ".crisper", "--api-port", "0") as up:
        # Given a job that needs 25 s more than the moment `up` is asked to stop
        job_id = up.cli("submit", "demo.countdown", "seconds=26").stdout.split()[0]
        wait_for(lambda: up.job(job_id)["state"] == "running", 60, "the job to run")

        # When `up` gets SIGTERM (as from a service manager)
        stopped_at = time.monotonic()
        assert up.proc is not None
        up.proc.send_signal(signal.SIGTERM)
        up.proc.wait(120)

        # Then it waited for the job: it finished and is recorded as succeeded
        assert up.proc.returncode == 0, up.log
        assert time.monotonic() - stopped_at > 20
        assert up.job(job_id)["state"] == "succeeded"
        assert "drain ran out" not in up.log


def test_a_drain_that_runs_out_stops_the_worker_cold_and_says_so(tmp_path: Path) -> None:
    with running(tmp_path, tmp_path / ".crisper", "--api-port", "0",
                 env={"CRISPER_DRAIN_SECONDS": "1"}) as up:
        job_id = up.cli("submit", "demo.stubborn", "seconds=600").stdout.split()[0]
        wait_for(lambda: up.job(job_id)["state"] == "running", 60, "the job to run")
        assert up.proc is not None

        up.proc.send_signal(signal.SIGINT)
        up.proc.wait(60)

        assert "the 1 s drain ran out with jobs still running" in up.log
        assert not (up.home / "embedded.json").exists()


def test_a_second_up_names_the_running_one_and_leaves_it_alone(tmp_path: Path) -> None:
    port = free_port()
    # Given `crisper up &` started from a script (so SIGINT starts ignored)
    with running(tmp_path, tmp_path / ".crisper", "--api-port", str(port), shell=True) as first:
        secret = first.local_key()
        state_before = (first.home / "embedded.json").read_text()

        # When a second `crisper up` starts in the same folder
        second = run_and_clean_up([*UP, "up", "--api-port", str(free_port())], tmp_path)

        # Then it refuses, naming the running instance, and touches nothing of it
        assert second.returncode != 0
        assert f"pid {first.pid}" in second.stderr
        assert f"http://127.0.0.1:{port}" in second.stderr
        assert "Traceback" not in second.stderr
        assert (first.home / "embedded.json").read_text() == state_before
        import httpx

        answer = httpx.get(f"http://127.0.0.1:{port}/v1/jobs",
                           headers={"Authorization": f"Bearer {secret}"}, timeout=10)
        assert answer.status_code == 200

        # And Ctrl-C (SIGINT) stops the first one although its shell ignored SIGINT
        first.interrupt(60)
        assert not (first.home / "embedded.json").exists()
        assert not processes_in(first.home)


def test_a_full_disk_is_store_unavailable_and_everything_resumes(
        tmp_path: Path, small_disk: Path) -> None:
    import httpx
    import redis

    port = free_port()
    home = small_disk / "home"
    with running(tmp_path, home, "--api-port", str(port)) as up:
        warm = up.cli("submit", "demo.countdown", "seconds=1", "--wait")
        assert warm.returncode == 0, warm.stderr
        secret = up.local_key(30)

        # Given the disk holding the database and the broker's files fills up
        filler = fill_disk(small_disk)

        # Then the CLI says so in one sentence with exit code 7, and the API answers 503
        submit = up.cli("submit", "demo.noop")
        assert submit.returncode == 7, submit.stderr
        assert submit.stderr.startswith("error: ") and "Traceback" not in submit.stderr
        assert len(submit.stderr.strip().splitlines()) == 1
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/jobs", json={"type": "demo.noop"},
                            headers={"Authorization": f"Bearer {secret}"}, timeout=30)
        assert answer.status_code == 503, answer.text

        # And when a write reaches the broker, it refuses writes (MISCONF); the worker survives.
        # A failed database write frees its journal again, and Redis retries its AOF write each
        # second, so the disk is topped up before each probe until the worker has met a refusal.
        broker = redis.Redis.from_url(json.loads((home / "embedded.json").read_text())["url"])

        def worker_met_misconf() -> bool:
            fill_disk(small_disk)
            with contextlib.suppress(redis.ResponseError):
                broker.set("crisper-test:probe", b"x" * 8192)
                broker.set("crisper-test:probe", b"y")
            return "MISCONF" in up.log

        wait_for(worker_met_misconf, 30, "the worker to meet MISCONF", every=1)
        broker.close()
        time.sleep(3)
        assert up.alive(), up.log
        assert "Unrecoverable error" not in up.log

        # When space is freed, everything resumes
        filler.unlink()
        done = up.cli("submit", "demo.countdown", "seconds=1", "--wait", timeout=120)
        assert done.returncode == 0, done.stderr + up.log[-3000:]


def test_up_on_a_full_disk_fails_clearly_and_leaves_nothing_behind(
        tmp_path: Path, small_disk: Path) -> None:
    # Given a disk with no room left
    home = small_disk / "home"
    fill_disk(small_disk)

    # When `crisper up` starts there
    started = run_and_clean_up([*UP, "--home", str(home), "up", "--api-port", "0"], tmp_path)

    # Then it says so (exit 7, one sentence), and leaves no broker and no state file behind
    assert started.returncode == 7, started.stderr
    assert "Traceback" not in started.stderr and "no space left" in started.stderr.lower()
    assert not (home / "embedded.json").exists()
    assert not processes_in(home)


def test_up_whose_database_disk_is_full_stops_its_broker(
        tmp_path: Path, small_disk: Path) -> None:
    # Given room for the broker, but the database on a disk that is full
    home = tmp_path / ".crisper"
    fill_disk(small_disk)
    env = {**clean_env(), "CRISPER_DATABASE_URL": f"sqlite:///{small_disk / 'crisper.db'}"}

    started = run_and_clean_up([*UP, "--home", str(home), "up", "--api-port", "0"], tmp_path,
                               env)
    try:
        # Then the database's error is one sentence with exit 7, and the broker is gone too
        assert started.returncode == 7, started.stderr
        assert "Traceback" not in started.stderr
        assert "the database is unavailable" in started.stderr
        assert not (home / "embedded.json").exists()
        assert not processes_in(home)
    finally:
        kill_processes_in(home)


def test_a_state_file_is_written_whole_or_not_at_all(small_disk: Path) -> None:
    from crisper.embedded import write_atomically

    state = small_disk / "embedded.json"
    state.write_text('{"url": "redis://127.0.0.1:1/0", "pid": 1}')
    filler = fill_disk(small_disk)

    with pytest.raises(StoreUnavailable, match="No space left"):
        write_atomically(state, json.dumps({"url": "redis://127.0.0.1:2/0", "pad": "x" * 9000}))

    assert json.loads(state.read_text())["url"] == "redis://127.0.0.1:1/0"
    assert sorted(p.name for p in small_disk.iterdir()) == sorted([filler.name, state.name])


def test_a_partial_state_file_is_a_configuration_error(tmp_path: Path) -> None:
    home = tmp_path / ".crisper"
    home.mkdir()
    (home / "embedded.json").write_text('{"url": "redis://127.0.0.1:1')

    # When a command needs the broker's address (a worker starting, a dispatch)
    worker = run_and_clean_up([*UP, "--home", str(home), "worker"], tmp_path)

    # Then it is a configuration error in one sentence, not a traceback
    assert worker.returncode == 8, worker.stderr
    assert "Traceback" not in worker.stderr
    assert "embedded.json is unreadable or incomplete" in worker.stderr
