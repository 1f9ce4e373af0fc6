"""The cost of observe mode on plain Celery's no-op throughput, both measured in one run.

    python -m bench.observe_cost [--jobs 2000] [--runs 3]

Each run starts a `celery -A bench.apps.observed_noop worker -c 2` twice, once with
CRISPER_OBSERVE=false (plain Celery: the wrapper connects nothing) and once with it on (the
order alternates between runs), publishes `jobs` no-op tasks from this process (observing too
when the worker does) and times them from the first publish to the last body start. Medians
over the runs are reported, with the load average and idle CPU before each run; with observe
on, it also checks that every task ended as a `succeeded` observed row.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis
from celery import Celery
from sqlalchemy import func, select

from bench.apps import celery_noop
from bench.environment import (
    Proc,
    World,
    cpu_idle_fraction,
    delete_prefixed,
    postgres_schema,
    python,
    wait_ready,
)
from crisper import Crisper, Settings
from crisper.store import Store
from crisper.store.models import jobs

PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"


def one_mode(world: World, app: Celery, observe: bool, n: int, logs: Path, run: int
             ) -> tuple[float, float]:
    """Tasks per second for one worker start with observe mode on or off, and the CPU
    milliseconds per task the worker (all its processes) and this caller spent."""
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
        task = app.tasks[celery_noop.TASK]
        cpu0 = sum(worker.cpu_seconds()) + time.process_time()
        started = time.perf_counter()
        queue = world.queue(tag)
        for _ in range(n):
            task.apply_async(queue=queue)
        while signals.llen(env["BENCH_SIGNAL_KEY"]) < n:
            if not worker.alive():
                raise RuntimeError(f"worker exited:\n{worker.tail()}")
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        time.sleep(2 * caller.settings.observe_flush_seconds)  # the flushes of these tasks
        cpu = sum(worker.cpu_seconds()) + time.process_time() - cpu0
        if observe:
            check_rows(caller, n)
        return n / elapsed, 1000 * cpu / n
    finally:
        worker.stop()
        if "observer" in caller.__dict__:
            caller.observer.disconnect()
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", "-n", type=int, default=2000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--broker", default="redis://127.0.0.1:6379/3")
    p.add_argument("--postgres", default=PG_BASE)
    args = p.parse_args(argv)
    world = World(pg_base=args.postgres, broker=args.broker, signal_url=args.broker)
    logs = Path(tempfile.mkdtemp(prefix="crisper-observe-cost-"))
    rates: dict[bool, list[float]] = {False: [], True: []}
    cpus: dict[bool, list[float]] = {False: [], True: []}
    app = celery_noop.make(world.broker, world.prefix("broker"))
    with postgres_schema(world):
        Store(world.database_url).create_all()
        try:
            for run in range(args.runs):
                load, idle = os.getloadavg()[0], cpu_idle_fraction() * 100
                print(f"run {run + 1}: load average {load:.2f}, CPU idle {idle:.0f}%", flush=True)
                order = (False, True) if run % 2 == 0 else (True, False)
                for observe in order:
                    # Rows of earlier "on" passes stay; check_rows counts multiples of n.
                    rate, cpu = one_mode(world, app, observe, args.jobs, logs, run)
                    rates[observe].append(rate)
                    cpus[observe].append(cpu)
                    print(f"  observe {'on ' if observe else 'off'}: {rate:8.1f} tasks/s, "
                          f"{cpu:.2f} CPU ms per task", flush=True)
        finally:
            delete_prefixed(world.signal_url, f"bench{world.token}:")
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"median of {args.runs}: observe off {off:.1f} tasks/s, on {on:.1f} tasks/s, "
          f"{100 * (off - on) / off:+.1f}% slower with observe on (target: under 15%)")
    c_off, c_on = statistics.median(cpus[False]), statistics.median(cpus[True])
    print(f"median CPU per task (worker processes + caller): off {c_off:.2f} ms, on "
          f"{c_on:.2f} ms ({100 * (c_on - c_off) / c_off:+.1f}%)")
    print(f"worker logs: {logs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
