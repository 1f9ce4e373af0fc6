"""A throwaway world for one benchmark run: PostgreSQL schema, Redis prefixes, worker processes.

Everything made here is removed again on exit, and only processes this module started are
ever signalled (each in its own process group).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class World:
    """Names and URLs private to one benchmark invocation."""

    pg_base: str
    broker: str
    signal_url: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def schema(self) -> str:
        return f"bench_{self.token}"

    @property
    def app_name(self) -> str:
        """PostgreSQL application_name of the worker's connections, to find their backends."""
        return f"crisperbench_{self.token}"

    @property
    def database_url(self) -> str:
        return (f"{self.pg_base}?application_name={self.app_name}"
                f"&options=-csearch_path%3D{self.schema}")

    def prefix(self, part: str) -> str:
        return f"bench{self.token}:{part}:"

    def queue(self, system: str) -> str:
        return f"bench_{self.token}_{system}"

    @property
    def is_redis(self) -> bool:
        return self.broker.startswith(("redis://", "rediss://"))


def create_schema(world: World) -> None:
    admin = create_engine(world.pg_base.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {world.schema}"))
    admin.dispose()


@contextlib.contextmanager
def postgres_schema(world: World, create: bool = True) -> Iterator[None]:
    """The world's schema (made here unless `create` is false), dropped at the end."""
    if create:
        create_schema(world)
    admin = create_engine(world.pg_base.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        yield
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {world.schema} CASCADE"))
        admin.dispose()


def commit_times_ms(world: World, samples: int, gap_seconds: float = 0.0) -> list[float]:
    """Wall times of a one-row INSERT committed on its own (durably, as the server is set), in
    a table of the world's schema, with `gap_seconds` between them.

    One every 10 ms is how the pickup benchmarks meet the database: the machine idles in
    between, and on these VMs such a commit costs 2-3 times one back to back."""
    times = []
    with postgres_schema(world), psycopg.connect(
            world.pg_base, autocommit=True, options=f"-csearch_path={world.schema}") as conn:
        conn.execute("CREATE TABLE commit_probe (n int)")
        for _ in range(samples):
            began = time.perf_counter()
            conn.execute("INSERT INTO commit_probe VALUES (1)")
            times.append((time.perf_counter() - began) * 1000)
            time.sleep(gap_seconds)
    return times


def delete_prefixed(url: str, prefix: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        return int(client.delete(*keys)) if keys else 0
    finally:
        client.close()


def delete_amqp_queues(url: str, queues: list[str]) -> None:
    from kombu import Connection

    with Connection(url, connect_timeout=3) as conn:
        channel = conn.channel()
        for name in queues:
            with contextlib.suppress(Exception):
                channel.queue_delete(name)


class Proc:
    """A child process in its own process group; stop() leaves nothing of it running."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = log.open("ab")
        self.popen = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 20) -> None:
        if self.alive():
            self._signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.popen.wait(10)
        self._signal(signal.SIGKILL)  # stray pool children left in the group
        self._log.close()

    def cpu_seconds(self) -> tuple[float, float]:
        """User+system CPU of this process, and of the rest of its group (a worker's pool)."""
        main = rest = 0.0
        for pid, cpu in _group_members(self.popen.pid):
            if pid == self.popen.pid:
                main += cpu
            else:
                rest += cpu
        return main, rest

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def _group_members(pgid: int) -> Iterator[tuple[int, float]]:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields and int(fields[2]) == pgid:
            yield int(entry.name), (int(fields[11]) + int(fields[12])) / CLK_TCK


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state is index 0)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()


def process_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def redis_cpu(url: str) -> float:
    """The Redis server's CPU seconds so far, as it reports them (user + system): the broker's
    share of a run, wherever the server runs."""
    client = redis.Redis.from_url(url)
    try:
        info = client.info("cpu")
    finally:
        client.close()
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def backend_pids(world: World) -> list[int]:
    """PostgreSQL server processes serving the worker's connections (same machine only)."""
    engine = create_engine(world.pg_base.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE application_name = :n"),
                {"n": world.app_name})
            return [int(r[0]) for r in rows]
    finally:
        engine.dispose()


def wait_ready(client: redis.Redis, key: str, proc: Proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not client.exists(key):
        if not proc.alive():
            raise RuntimeError(f"worker exited while starting:\n{proc.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"worker not ready after {timeout}s:\n{proc.tail()}")
        time.sleep(0.05)
    client.delete(key)


def python() -> str:
    return sys.executable


def cpu_speed_ms(repeats: int = 5) -> float:
    """Milliseconds one core takes for a fixed piece of pure Python (median of `repeats`).

    Idle share and load say whether others use the CPUs; this says how fast a core is right
    now: on a shared VM it changes by tens of percent between runs, and every process of a
    benchmark (producer, workers, PostgreSQL) slows together with it."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        total = 0
        for i in range(300_000):
            total += i * i % 7
        times.append((time.perf_counter() - began) * 1000)
    return sorted(times)[repeats // 2]


def cpu_idle_fraction(seconds: float = 1.0) -> float:
    """Share of all CPUs idle over `seconds` (before our processes start: others' load)."""
    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return values[3] + values[4], sum(values)

    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
    return (idle1 - idle0) / max(1, total1 - total0)
