"""`crisper up` as a user runs it, in a folder of its own: started, watched, stopped, cleaned up.

Shared by the quick start's tests (Ctrl-C ends them, as a user ends `up`) and the embedded
default's fault tests (which kill whatever is left, whatever happened).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ROOT, wait_for

UP = [sys.executable, "-m", "crisper"]


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRISPER_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


class Up:
    """A `crisper up` started in `folder` (its own session), with its log and its home
    (None: no --home, so the default, ./.crisper)."""

    def __init__(self, folder: Path, home: Path | None, *args: str, shell: bool = False,
                 env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.home = home or folder / ".crisper"
        self.log_path = folder / f"up-{time.monotonic_ns()}.log"
        command = [*UP, *(["--home", str(home)] if home else []), "up", *args]
        environment = {**clean_env(), **(env or {})}
        with self.log_path.open("w") as log:
            if shell:  # as `crisper up &` from a script: the shell starts it with SIGINT ignored
                line = " ".join(command) + f" > {self.log_path} 2>&1 & echo $!"
                starter = subprocess.run(["bash", "-c", line], cwd=folder, env=environment,
                                         capture_output=True, text=True, start_new_session=True,
                                         timeout=30)
                self.pid = int(starter.stdout.strip())
                self.proc: subprocess.Popen[bytes] | None = None
            else:
                self.proc = subprocess.Popen(command, cwd=folder, env=environment, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True)
                self.pid = self.proc.pid
        self.group = os.getpgid(self.pid)

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return pid_running(self.pid)

    def wait_ready(self, timeout: float = 90) -> None:
        # the worker's "ready." and up's own "Crisper is up" (after the API key) come in any order
        wait_for(lambda: ("ready." in self.log and "Crisper is up" in self.log)
                 or not self.alive(), timeout, "crisper up to start")
        assert self.alive(), self.log

    def wait_stopped(self, timeout: float) -> None:
        wait_for(lambda: not self.alive(), timeout, "crisper up to stop")

    def interrupt(self, timeout: float) -> None:
        """Ctrl-C, as a user stops it. If it has not stopped within `timeout`, everything is
        killed and the test fails with the end of its log."""
        os.kill(self.pid, signal.SIGINT)
        try:
            self.wait_stopped(timeout)
        except AssertionError:
            self.kill()
            pytest.fail(f"crisper up did not stop within {timeout:g} s:\n{self.log[-4000:]}")

    def local_key(self, timeout: float = 60) -> str:
        """The local admin key `up` prints once its API is set up (waited for)."""
        marker = "CRISPER_API_KEY="
        wait_for(lambda: marker in self.log, timeout, "the local key")
        return self.log.split(marker)[1].split()[0]

    def broker_pid(self) -> int:
        return int(json.loads((self.home / "embedded.json").read_text())["pid"])

    def cli(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*UP, "--home", str(self.home), *args], cwd=self.folder,
                              env=clean_env(), capture_output=True, text=True, timeout=timeout)

    def job(self, job_id: str) -> dict[str, object]:
        shown = self.cli("jobs", "show", job_id, "--json")
        assert shown.returncode == 0, shown.stderr
        return dict(json.loads(shown.stdout))

    def kill(self) -> None:
        """Whatever happened, leave nothing running (the group, and the broker by its pid)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.group, signal.SIGKILL)
        with contextlib.suppress(OSError, ValueError, KeyError):
            os.kill(self.broker_pid(), signal.SIGKILL)
        kill_processes_in(self.home)
        if self.proc is not None:
            self.proc.wait(10)


@contextlib.contextmanager
def running(folder: Path, home: Path, *args: str, shell: bool = False,
            env: dict[str, str] | None = None) -> Iterator[Up]:
    up = Up(folder, home, *args, shell=shell, env=env)
    try:
        up.wait_ready()
        yield up
    finally:
        up.kill()


def pid_running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a zombie has stopped running)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def processes_in(folder: Path) -> list[int]:
    """Processes whose working directory is `folder` (Valkey runs in its data folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if Path(os.readlink(entry / "cwd")) == folder.resolve() and pid_running(
                        int(entry.name)):
                    found.append(int(entry.name))
    return found


def kill_processes_in(folder: Path) -> None:
    for pid in processes_in(folder):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
