"""The cost of observe mode on plain Celery's no-op throughput, both measured in one run.

    python -m bench.observe_cost [--jobs 2000] [--runs 5]

Each run starts a `celery -A bench.apps.observed_noop worker -c 2` twice, once with
CRISPER_OBSERVE=false (plain Celery: the wrapper connects nothing) and once with it on (the
order alternates between runs), publishes `jobs` no-op tasks from this process (observing too
when the worker does) and times them from the first publish to the last body start. Medians
over the runs are reported, with the load average and idle CPU before each run; with observe
on, it also checks that every task ended as a `succeeded` observed row.

CPU per task (process CPU times of the worker's main process and pool children, of this
caller, and of the PostgreSQL backends serving the run) is much less noisy than throughput on
a shared machine; both are printed, with the median of the on/off ratio of each pair.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from sqlalchemy import func, select

from bench.apps import celery_noop
from bench.environment import (
    Proc,
    World,
    backend_pids,
    cpu_idle_fraction,
    delete_prefixed,
    postgres_schema,
    process_cpu,
    python,
    wait_ready,
)
from crisper import Crisper, Settings
from crisper.store import Store
from crisper.store.models import jobs

PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Pass:
    """One worker start's figures."""

    rate: float  # tasks/s from the first publish to the last body start
    drain: float  # tasks/s between the first and the last body start (the worker alone)
    worker_main: float  # CPU ms per task of the worker's main process
    worker_pool: float  # CPU ms per task of its pool children
    caller_cpu: float  # CPU ms per task of this process publishing (and flushing, when on)
    pg_cpu: float  # CPU ms per task of the PostgreSQL backends serving the bench's connections

    @property
    def worker_cpu(self) -> float:
        return self.worker_main + self.worker_pool

    @property
    def all_cpu(self) -> float:
        return self.worker_cpu + self.caller_cpu + self.pg_cpu


def pg_cpu(world: World) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving this run (same machine only)."""
    return {pid: process_cpu([pid]) for pid in backend_pids(world)}


def run_tasks(task: Any, queue: str, n: int, signals: redis.Redis, key: str,
              worker: Proc) -> None:
    """Publish `n` no-op tasks and wait until every body has started."""
    for _ in range(n):
        task.apply_async(queue=queue)
    while signals.llen(key) < n:
        if not worker.alive():
            raise RuntimeError(f"worker exited:\n{worker.tail()}")
        time.sleep(0.05)


def one_mode(world: World, app: Celery, observe: bool, n: int, logs: Path, run: int,
             warmup: int) -> Pass:
    """One worker start with observe mode on or off, `n` no-op tasks through it (after
    `warmup` untimed ones: each pool child has made its connections, as in a worker that has
    been up a while)."""
    mode = "on" if observe else "off"
    tag = f"{mode}{run}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRISPER_", "BENCH_"))}
    env.update(PYTHONPATH=str(Path(__file__).resolve().parent.parent),
               BENCH_BROKER_URL=world.broker, BENCH_BROKER_PREFIX=world.prefix("broker"),
               BENCH_QUEUE=world.queue(tag), BENCH_SIGNAL_URL=world.signal_url,
               BENCH_SIGNAL_KEY=world.prefix("marks") + tag,
               BENCH_READY_KEY=world.prefix("ready") + tag,
               CRISPER_DATABASE_URL=world.database_url, CRISPER_OBSERVE=str(observe).lower())
    worker = Proc([python(), "-m", "celery", "-A", "bench.apps.observed_noop", "worker", "-Q",
                   world.queue(tag), "-c", "2", "--without-mingle", "--without-gossip",
                   "--loglevel", "WARNING"], env, logs / f"worker-{tag}.log")
    signals = redis.Redis.from_url(world.signal_url)
    caller = Crisper("bench_caller", celery=app, settings=Settings(
        database_url=world.database_url, observe=observe))
    try:
        wait_ready(signals, env["BENCH_READY_KEY"], worker)
        task, queue = app.tasks[celery_noop.TASK], world.queue(tag)
        if warmup:
            run_tasks(task, queue, warmup, signals, env["BENCH_SIGNAL_KEY"], worker)
            time.sleep(2 * caller.settings.observe_flush_seconds)
            signals.delete(env["BENCH_SIGNAL_KEY"])
        worker0, caller0, pg0 = worker.cpu_seconds(), time.process_time(), pg_cpu(world)
        started = time.perf_counter()
        run_tasks(task, queue, n, signals, env["BENCH_SIGNAL_KEY"], worker)
        elapsed = time.perf_counter() - started
        time.sleep(2 * caller.settings.observe_flush_seconds)  # the flushes of these tasks
        if "observer" in caller.__dict__:
            caller.observer.disconnect()  # the caller's last flush
        # Publishing, the caller's flusher thread, and polling Redis for the marks (both modes).
        caller_cpu = time.process_time() - caller0
        worker1, pg1 = worker.cpu_seconds(), pg_cpu(world)
        pg = sum(cpu - pg0.get(pid, 0.0) for pid, cpu in pg1.items())
        marks = [float(x) for x in signals.lrange(env["BENCH_SIGNAL_KEY"], 0, -1)]
        if observe:
            check_rows(caller, n + warmup)
        return Pass(n / elapsed, (n - 1) / (max(marks) - min(marks)),
                    1000 * (worker1[0] - worker0[0]) / n, 1000 * (worker1[1] - worker0[1]) / n,
                    1000 * caller_cpu / n, 1000 * pg / n)
    finally:
        worker.stop()
        caller.store.close()
        signals.close()


def check_rows(caller: Crisper, n: int, timeout: float = 60) -> None:
    """Every task of this pass ends as one succeeded observed row (flushes lag a little)."""
    store = Store(caller.settings.resolved_database_url())
    deadline = time.monotonic() + timeout
    try:
        while True:
            with store.read() as s:
                done = s.scalar(select(func.count()).select_from(jobs).where(
                    jobs.c.source == "observed", jobs.c.state == "succeeded"))
            if done and done % n == 0 and done >= n:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"observed rows: {done} succeeded, expected a multiple of {n}")
            time.sleep(0.5)
    finally:
        store.close()


ROWS = (("end-to-end tasks/s", "rate"), ("worker drain tasks/s", "drain"),
        ("worker CPU ms/task", "worker_cpu"), ("  main process", "worker_main"),
        ("  pool children", "worker_pool"), ("caller CPU ms/task", "caller_cpu"),
        ("PostgreSQL CPU ms/task", "pg_cpu"), ("all CPU ms/task", "all_cpu"))


def uptime() -> str:
    with open("/proc/loadavg") as f:
        one, five, fifteen = f.read().split()[:3]
    return f"load average {one}, {five}, {fifteen}"


def report(pairs: list[tuple[Pass, Pass]], n: int) -> None:
    """Medians of each figure, and medians of the per-pair ratios on/off (pairs share a load)."""
    print(f"medians of {len(pairs)} pairs ({n} tasks each):")
    print(f"  {'':24s} {'off':>8s} {'on':>8s} {'on/off':>8s} {'pair ratios on/off'}")
    for label, attr in ROWS:
        off = statistics.median(getattr(x, attr) for x, _ in pairs)
        on = statistics.median(getattr(y, attr) for _, y in pairs)
        ratios = [getattr(y, attr) / getattr(x, attr) for x, y in pairs if getattr(x, attr)]
        shown = " ".join(f"{r:.2f}" for r in ratios)
        med = f"{statistics.median(ratios):8.3f}" if ratios else f"{'-':>8s}"
        print(f"  {label:24s} {off:8.2f} {on:8.2f} {med} [{shown}]")
    throughput = statistics.median(y.rate / x.rate for x, y in pairs)
    worker = statistics.median(y.worker_cpu / x.worker_cpu for x, y in pairs)
    print(f"observe on / off, median of pair ratios: throughput {throughput:.3f} "
          f"({100 * (throughput - 1):+.1f}%), worker CPU per task {worker:.3f} "
          f"({100 * (worker - 1):+.1f}%)")
    print("target: throughput under 15% lower with observe on")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", "-n", type=int, default=2000)
    p.add_argument("--runs", type=int, default=5, help="pairs of passes (off, on)")
    p.add_argument("--warmup", type=int, default=200, help="untimed tasks first, per pass")
    p.add_argument("--broker", default="redis://127.0.0.1:6379/3")
    p.add_argument("--postgres", default=PG_BASE)
    args = p.parse_args(argv)
    world = World(pg_base=args.postgres, broker=args.broker, signal_url=args.broker)
    logs = Path(tempfile.mkdtemp(prefix="crisper-observe-cost-"))
    pairs: list[tuple[Pass, Pass]] = []
    app = celery_noop.make(world.broker, world.prefix("broker"))
    with postgres_schema(world):
        store = Store(world.database_url)
        store.create_all()
        store.close()
        try:
            for run in range(args.runs):
                idle = cpu_idle_fraction() * 100
                print(f"run {run + 1}: {uptime()}, CPU idle {idle:.0f}%", flush=True)
                done: dict[bool, Pass] = {}
                for observe in ((False, True) if run % 2 == 0 else (True, False)):
                    # Rows of earlier "on" passes stay; check_rows counts multiples of n.
                    f = done[observe] = one_mode(world, app, observe, args.jobs, logs, run,
                                                     args.warmup)
                    print(f"  observe {'on ' if observe else 'off'}: {f.rate:7.1f} tasks/s "
                          f"end to end, worker drain {f.drain:7.1f}/s, CPU ms per task: worker "
                          f"{f.worker_main:.2f} main + {f.worker_pool:.2f} pool, caller "
                          f"{f.caller_cpu:.2f}, PostgreSQL {f.pg_cpu:.2f}", flush=True)
                pairs.append((done[False], done[True]))
        finally:
            delete_prefixed(world.signal_url, f"bench{world.token}:")
    report(pairs, args.jobs)
    print(f"worker logs: {logs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
