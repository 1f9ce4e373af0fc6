"""Private service instances for faults that stop, restart or flush a broker or a database.

The machine's shared PostgreSQL and Redis serve other test runs: they are never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from crisper import Crisper
from crisper.embedded import free_port
from crisper.store.db import normalize_url
from tests.apps import faultprobe
from tests.harness import FAST, Backend, wait_for

INITDB = Path("/usr/local/bin/initdb")
PG_CTL = Path("/usr/local/bin/pg_ctl")
PG_USER = "postgres"  # initdb and postgres refuse to run as root


def missing_tools() -> list[str]:
    """The binaries the private instances need that this machine lacks."""
    needed = {"redis-server": shutil.which("redis-server"), str(INITDB): INITDB.exists(),
              str(PG_CTL): PG_CTL.exists()}
    return [name for name, found in needed.items() if not found]


class PrivateRedis:
    """A `redis-server` of this test's own, without persistence: a restart loses everything."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._answers, 15, f"redis-server on port {self.port}")

    def kill(self) -> None:
        """Gone at once, with every message it held."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def restart_empty(self) -> None:
        self.kill()
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def _answers(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.RedisError:
            return False


class PrivatePostgres:
    """A PostgreSQL cluster of this run's own (initdb + pg_ctl in a temporary folder)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()

    def _as_owner(self, *args: str) -> list[str]:
        cmd = [str(a) for a in args]
        return ["runuser", "-u", PG_USER, "--", *cmd] if os.geteuid() == 0 else cmd

    def create(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, PG_USER)
        subprocess.run(self._as_owner(str(INITDB), "-D", str(self.data), "-A", "trust", "-U",
                                      "postgres", "--no-sync", "-E", "UTF8"),
                       check=True, capture_output=True)
        self.start()

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c max_connections=200")
        subprocess.run(self._as_owner(str(PG_CTL), "-D", str(self.data), "-o", options,
                                      "-l", str(self.folder / "log"), "-w", "start"),
                       check=True, capture_output=True)

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(self._as_owner(str(PG_CTL), "-D", str(self.data), "-m", mode, "-w",
                                      "stop"), check=True, capture_output=True)

    def ensure_running(self) -> None:
        status = subprocess.run(self._as_owner(str(PG_CTL), "-D", str(self.data), "status"),
                                capture_output=True)
        if status.returncode != 0:
            self.start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @contextmanager
    def schema(self) -> Iterator[str]:
        """A clean schema of one test's own; yields a database URL that uses it."""
        name = f"f_{uuid.uuid4().hex[:12]}"
        admin = create_engine(normalize_url(self.url), poolclass=NullPool)  # survives restarts
        try:
            with admin.begin() as conn:
                conn.execute(text(f"CREATE SCHEMA {name}"))
            yield f"{self.url}?options=-csearch_path%3D{name}"
            self.ensure_running()
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {name} CASCADE"))
        finally:
            admin.dispose()


@dataclass
class FaultBackend(Backend):
    """A harness backend whose processes and test-side app run the fault probe's job types."""

    redis_server: PrivateRedis | None = None
    postgres: PrivatePostgres | None = None

    @property
    def app(self) -> Crisper:
        if self._app is None:
            self._app = faultprobe.build(self.settings)
        return self._app

    def app_with(self, **overrides: Any) -> Crisper:
        app = faultprobe.build(self.settings.model_copy(update=overrides))
        self._others.append(app)
        return app

    def marks(self) -> list[faultprobe.Mark]:
        return faultprobe.read_marks(self.tmp)

    def started(self) -> int:
        return sum(m.event == "start" for m in self.marks())


@contextmanager
def fault_backend(tmp: Path, postgres: PrivatePostgres, **env: str) -> Iterator[FaultBackend]:
    """Private PostgreSQL schema + private redis-server, short clocks, the fault probe app."""
    broker = PrivateRedis(tmp / "redis")
    broker.start()
    try:
        with postgres.schema() as db_url:
            backend = FaultBackend(
                "private-postgres-redis",
                {**FAST, "CRISPER_DATABASE_URL": db_url, "CRISPER_BROKER_URL": broker.url,
                 "CRISPER_APP": "tests.apps.faultprobe", **env},
                tmp, redis_server=broker, postgres=postgres)
            backend.app.store.create_all()
            try:
                yield backend
            finally:
                backend.close()
    finally:
        broker.kill()
