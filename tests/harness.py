"""Test harness: clean backends and real Crisper processes (workers, schedulers) to poke at."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from crisper import Crisper, Settings
from crisper.embedded import EmbeddedBroker, die_with_parent
from crisper.store.db import normalize_url
from crisper.store.models import metadata
from tests.apps import probe

ROOT = Path(__file__).resolve().parent.parent
PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_BASE = "redis://127.0.0.1:6379"

# Short clocks so that fault tests finish in seconds.
FAST = {
    "CRISPER_LEASE_SECONDS": "3",
    "CRISPER_HEARTBEAT_SECONDS": "0.5",
    "CRISPER_TICK_SECONDS": "0.2",
    "CRISPER_REDISPATCH_AFTER_SECONDS": "2",
    "CRISPER_CANCEL_GRACE_SECONDS": "2",
}


@dataclass(frozen=True)
class Services:
    postgres: bool
    redis: bool
    rabbitmq: bool


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


class Proc:
    """A Crisper process in its own process group, so signals reach its children too."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = log.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "crisper", *args], env=env, cwd=ROOT,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=die_with_parent,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal(self, sig: int) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout: float = 15) -> None:
        if self.popen.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.signal(signal.SIGKILL)  # stray children of the group
        self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Backend:
    name: str
    env: dict[str, str]
    tmp: Path
    procs: list[Proc] = field(default_factory=list)
    broker: EmbeddedBroker | None = None
    _app: Crisper | None = None
    _others: list[Crisper] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return Settings(**{k.removeprefix("CRISPER_").lower(): v for k, v in self.env.items()
                           if k.startswith("CRISPER_") and k != "CRISPER_APP"})

    @property
    def app(self) -> Crisper:
        """The probe app as the test process sees it (same job types as the workers)."""
        if self._app is None:
            self._app = probe.build(self.settings)
        return self._app

    def app_with(self, **overrides: Any) -> Crisper:
        """Another probe app on this backend with some settings changed; closed with it."""
        app = probe.build(self.settings.model_copy(update=overrides))
        self._others.append(app)
        return app

    def process_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRISPER_")}
        env.update(self.env)
        env["PYTHONPATH"] = str(ROOT)
        env["PROBE_DIR"] = str(self.tmp)
        env.update(extra)
        return env

    def start_worker(self, concurrency: int = 2, pool: str = "prefork", wait: bool = True,
                     extra: list[str] | None = None, **env: str) -> Proc:
        name = f"w{len(self.procs)}-{uuid.uuid4().hex[:6]}@test"
        proc = Proc(["worker", "--concurrency", str(concurrency), "--pool", pool, "-n", name,
                     "--without-mingle", "--without-gossip", *(extra or [])],
                    self.process_env(**env), self.tmp / f"{name}.log")
        self.procs.append(proc)
        if wait:
            wait_for(lambda: self._worker_ready(name, proc), 30, f"worker {name} to start")
        return proc

    def _worker_ready(self, name: str, proc: Proc) -> bool:
        if proc.popen.poll() is not None:
            raise AssertionError(f"worker exited:\n{proc.output()[-3000:]}")
        return "ready." in proc.output()

    def freeze(self, proc: Proc, tries: int = 100) -> None:
        """SIGSTOP `proc` at a moment it has no write transaction open. Frozen inside one, it
        would hold up every writer (all of SQLite; in PostgreSQL, those that need its rows)
        until it thaws: a stale worker here is one that lost its lease, not one holding a lock."""
        for _ in range(tries):
            proc.signal(signal.SIGSTOP)
            if self._no_write_open():
                return
            proc.signal(signal.SIGCONT)
            time.sleep(0.02)
        raise AssertionError(f"{proc.log_path.name} always had a write transaction open")

    def _no_write_open(self) -> bool:
        store = self.app.store
        if store.dialect == "sqlite":
            conn = sqlite3.connect(str(store.engine.url.database), timeout=0.2,
                                   isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")  # the write lock, free only if no one writes
                conn.execute("ROLLBACK")
                return True
            except sqlite3.OperationalError:
                return False
            finally:
                conn.close()
        tables = ", ".join(table.name for table in metadata.sorted_tables)
        try:  # EXCLUSIVE conflicts with every open transaction that wrote or locked rows
            with store.engine.begin() as locking:
                locking.execute(text(f"LOCK TABLE {tables} IN EXCLUSIVE MODE NOWAIT"))
        except OperationalError:
            return False
        return True

    def start_scheduler(self, **env: str) -> Proc:
        proc = Proc(["scheduler"], self.process_env(**env),
                    self.tmp / f"scheduler{len(self.procs)}.log")
        self.procs.append(proc)
        return proc

    def broker_url(self) -> str:
        return self.env["CRISPER_BROKER_URL"]

    def flush_broker(self) -> int:
        """The broker forgets every message, as a Redis restarted without persistence does.

        Only this test's keys go: other test runs may share the Redis server.
        """
        return delete_prefixed(self.broker_url(), self.env.get("CRISPER_BROKER_PREFIX", ""))

    def probe_rows(self) -> list[probe.ProbeRow]:
        return probe.read_marks(self.tmp)

    def close(self) -> None:
        for proc in self.procs:
            proc.stop()
        for app in [self._app, *self._others]:
            if app is not None:
                if "jobs" in app.__dict__:  # wake-ups still on their way may need the store
                    app.jobs.waker.flush()
                app.store.close()


@contextmanager
def make_backend(name: str, tmp: Path) -> Iterator[Backend]:
    if name == "postgres-redis":
        with _postgres_schema() as db_url, _redis_prefix() as (broker_url, prefix):
            backend = Backend(name, {**FAST, "CRISPER_DATABASE_URL": db_url,
                                     "CRISPER_BROKER_URL": broker_url,
                                     "CRISPER_BROKER_PREFIX": prefix,
                                     "CRISPER_APP": "tests.apps.probe"}, tmp)
            yield from _prepared(backend)
    else:
        broker = EmbeddedBroker(tmp / "broker")
        broker.start()
        backend = Backend(name, {**FAST, "CRISPER_DATABASE_URL": f"sqlite:///{tmp / 'crisper.db'}",
                                 "CRISPER_BROKER_URL": broker.url,
                                 "CRISPER_APP": "tests.apps.probe"}, tmp, broker=broker)
        try:
            yield from _prepared(backend)
        finally:
            broker.stop()


def _prepared(backend: Backend) -> Iterator[Backend]:
    backend.app.store.create_all()
    try:
        yield backend
    finally:
        backend.close()


@contextmanager
def _postgres_schema() -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalize_url(PG_BASE))
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@contextmanager
def _redis_prefix() -> Iterator[tuple[str, str]]:
    """A key prefix of this test's own on the shared Redis (other test runs may share it)."""
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    url = f"{REDIS_BASE}/1"
    try:
        yield url, prefix
    finally:
        delete_prefixed(url, prefix)


def delete_prefixed(url: str, prefix: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        return int(client.delete(*keys)) if keys else 0
    finally:
        client.close()


@contextmanager
def small_tmpfs(folder: Path, size: str, *, required: bool) -> Iterator[Path]:
    """A tmpfs of `size` mounted on `folder`: a disk that really fills up (needs root).

    Where it cannot be mounted the test skips, unless `required` (CI, which runs as root).
    """
    import pytest

    folder.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        reason = f"cannot mount a small tmpfs here: {mounted.stderr.strip()}"
        if required:
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill_disk(folder: Path) -> Path:
    """Write a file in `folder` until its disk is full; delete the file to free the space.
    Called again, it takes back what was freed since (it appends)."""
    import errno

    filler = folder / "filler"
    with filler.open("ab", buffering=0) as f:  # unbuffered: closing has nothing left to write
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return filler


def running_children() -> dict[int, str]:
    """This process's children that still run (zombies aside), with their command lines
    (Linux's /proc; elsewhere none are found)."""
    me, found = os.getpid(), {}
    proc = Path("/proc")
    for entry in proc.iterdir() if proc.is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # it ended while we looked
            continue
        state, parent = stat.rsplit(")", 1)[1].split()[:2]
        if int(parent) == me and state != "Z":
            found[int(entry.name)] = command.strip()
    return found


def kill_stray_children(grace: float = 3.0) -> dict[int, str]:
    """Kill the children still running after `grace` seconds; returns those it killed."""
    deadline = time.monotonic() + grace
    while (stray := running_children()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in stray:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return stray
