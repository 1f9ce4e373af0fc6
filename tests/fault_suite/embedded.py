"""`crisper up` as a user runs it (SQLite + the bundled Valkey under one home folder), for the
embedded default's fault scenarios: several `up`s in turn in one home, on the harness's Proc
(tests/e2e/up_process.py has the one a user starts in a folder, for the quick start)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from crisper import Crisper, Settings
from tests.apps import faultprobe
from tests.e2e.up_process import UP, clean_env
from tests.harness import FAST, ROOT, Proc, wait_for


class Up:
    """`crisper up` (no API) in `home`, the fault probe's job types, its marks in `tmp`."""

    def __init__(self, tmp: Path, home: Path, **env: str) -> None:
        self.tmp = tmp
        self.home = home
        self.env = {**clean_env(), **FAST, "CRISPER_HOME": str(home),
                    "CRISPER_APP": "tests.apps.faultprobe", "PROBE_DIR": str(tmp), **env}
        self.procs: list[Proc] = []
        self.apps: list[Crisper] = []

    def start(self) -> Proc:
        """Start it and wait for its worker to be ready."""
        log = self.tmp / f"up{len(self.procs)}.log"
        proc = Proc(["up", "--api-port", "0", "--concurrency", "2"], self.env, log)
        self.procs.append(proc)
        seen = len(proc.output().split("ready.")) if log.exists() else 1

        def ready() -> bool:
            if proc.popen.poll() is not None:
                raise AssertionError(f"crisper up exited:\n{proc.output()[-3000:]}")
            return len(proc.output().split("ready.")) > seen and self.state_file.exists()

        wait_for(ready, 60, "crisper up to be ready")
        return proc

    @property
    def state_file(self) -> Path:
        return self.home / "embedded.json"

    def valkey_pid(self) -> int:
        return int(json.loads(self.state_file.read_text())["pid"])

    def app(self) -> Crisper:
        """A client app for this home (the broker's address read now: it changes on restart)."""
        app = faultprobe.build(Settings(home=self.home,
                                        database_url=f"sqlite:///{self.home / 'crisper.db'}"))
        self.apps.append(app)
        return app

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*UP, *args], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    def close(self) -> None:
        for proc in self.procs:
            proc.stop(timeout=30)
        for app in self.apps:
            if "store" in app.__dict__:
                app.store.close()
