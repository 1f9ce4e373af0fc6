"""Throughput and pickup latency of no-op jobs: Crisper against plain Celery, same broker.

Run from the repository root:  .venv/bin/python -m bench.throughput [--quick] [--jobs N]
See bench/README.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench.environment import (
    World,
    cpu_idle_fraction,
    cpu_speed_ms,
    delete_amqp_queues,
    delete_prefixed,
    postgres_schema,
    process_cpu,
    redis_cpu,
)
from bench.systems import CrisperSystem, PlainCelery, System

PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"
SYSTEMS = {"celery": PlainCelery, "crisper": CrisperSystem}


@dataclass
class RunFigures:
    """One system's figures in one run."""

    system: str
    throughput: float = 0.0  # jobs/s, first submit -> all finished
    submit_rate: float = 0.0  # jobs/s, submitting alone
    drain: float | None = None  # jobs/s, pre-filled queue, from the first body start to the last
    pickup_ms: list[float] = field(default_factory=list)
    cpu_ms_per_job: dict[str, float] = field(default_factory=dict)


@dataclass
class Load:
    """The machine just before a run: others' load, and how fast a core is."""

    loadavg_1m: float
    idle_percent: float
    cpu_speed_ms: float  # environment.cpu_speed_ms: lower is a faster core

    @classmethod
    def now(cls) -> Load:
        return cls(os.getloadavg()[0], round(cpu_idle_fraction() * 100, 1),
                   round(cpu_speed_ms(), 1))

    def describe(self) -> str:
        return (f"load average {self.loadavg_1m:.2f}, CPU idle {self.idle_percent:.0f}%, "
                f"a fixed CPU task {self.cpu_speed_ms:.1f} ms")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: q in [0, 100]."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


# -- phases -----------------------------------------------------------------------------------

def measure_pickup(system: System, samples: int, warmup: int) -> list[float]:
    """Submit one job, wait for its body to start, let it finish, pause; repeat."""
    latencies = []
    system.reset_signals()
    for i in range(warmup + samples):
        sent = time.time()
        handle = system.submit_one()
        started = system.wait_pickup()
        system.settle(handle)
        if i >= warmup:
            latencies.append((started - sent) * 1000)
        time.sleep(0.01)
    return latencies


def measure_throughput(system: System, jobs: int, batch: int, figures: RunFigures,
                       each: bool = False) -> None:
    """First submit until every job has finished, with CPU spent per job on each side.

    `each`: one submit call per job (System.submit_each) instead of bulk in `batch`es.
    """
    system.reset_signals()
    cpu_before = _cpu(system)
    own_before = time.process_time()
    t0 = time.perf_counter()
    if each:
        system.submit_each(jobs)
    else:
        system.submit(jobs, batch)
    t_submitted = time.perf_counter()
    system.wait_finished(jobs, timeout=60 + jobs / 20)
    t_done = time.perf_counter()
    own_cpu = time.process_time() - own_before
    cpu_after = _cpu(system)
    figures.throughput = jobs / (t_done - t0)
    figures.submit_rate = jobs / max(1e-9, t_submitted - t0)
    figures.cpu_ms_per_job = {
        part: round((cpu_after.get(part, 0.0) - cpu_before.get(part, 0.0)) * 1000 / jobs, 3)
        for part in cpu_after
    }
    figures.cpu_ms_per_job["producer"] = round(own_cpu * 1000 / jobs, 3)


def measure_drain(system: System, jobs: int, batch: int) -> float:
    """Pre-fill the queue with the worker stopped, start it, time first to last body start."""
    system.stop_workers()
    system.reset_signals()
    system.submit(jobs, batch)
    system.start_worker()
    system.wait_finished(jobs, timeout=60 + jobs / 20)
    starts = sorted(system.start_times())
    return (len(starts) - 1) / max(1e-9, starts[-1] - starts[0])


def _cpu(system: System) -> dict[str, float]:
    cpu = {"worker_main": 0.0, "worker_pool": 0.0}
    for proc in system.workers:
        main, pool = proc.cpu_seconds()
        cpu["worker_main"] += main
        cpu["worker_pool"] += pool
    if system.support:
        cpu["scheduler"] = sum(sum(p.cpu_seconds()) for p in system.support)
    pids = system.db_pids()
    if pids:
        cpu["postgres"] = process_cpu(pids)
    if system.world.is_redis:  # the broker (and the bodies' start marks, the same per side)
        cpu["redis"] = redis_cpu(system.world.broker)
    return cpu


def run_system(system: System, args: argparse.Namespace) -> RunFigures:
    figures = RunFigures(system.name)
    system.start_support()
    system.start_worker()
    figures.pickup_ms = measure_pickup(system, args.samples, args.warmup)
    measure_throughput(system, args.jobs, args.batch, figures)
    if args.drain:
        figures.drain = measure_drain(system, args.jobs, args.batch)
    return figures


# -- one run: a fresh world, both systems, everything removed after --------------------------

@contextlib.contextmanager
def fresh_world(args: argparse.Namespace) -> Iterator[World]:
    world = World(pg_base=args.postgres, broker=args.broker, signal_url=args.signal_redis)
    with postgres_schema(world):
        try:
            yield world
        finally:
            delete_prefixed(world.signal_url, f"bench{world.token}:")
            if world.is_redis:
                delete_prefixed(world.broker, f"bench{world.token}:")
            else:
                delete_amqp_queues(world.broker, [world.queue(n) for n in SYSTEMS])


def world_options(p: argparse.ArgumentParser) -> None:
    """--broker, --postgres and --signal-redis: where a benchmark's world lives."""
    p.add_argument("--broker", default="redis://127.0.0.1:6379/3",
                   help="redis://… (key prefixes per run) or amqp://… (queues per run)")
    p.add_argument("--postgres", default=PG_BASE, help="database; a fresh schema per run")
    p.add_argument("--signal-redis", default="redis://127.0.0.1:6379/3",
                   help="Redis where job bodies record their start times")


@contextlib.contextmanager
def system_world(args: argparse.Namespace, name: str, prefix: str = "crisper-bench-"
                 ) -> Iterator[tuple[System, Path]]:
    """One system (`SYSTEMS[name]`) on a fresh world, no worker started yet, and a scratch
    directory for its logs, all removed on exit."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp, fresh_world(args) as world:
        signals = redis.Redis.from_url(world.signal_url)
        system = SYSTEMS[name](world, signals, Path(tmp))
        try:
            yield system, Path(tmp)
        finally:
            system.close()
            signals.close()


@contextlib.contextmanager
def crisper_world(args: argparse.Namespace, prefix: str = "crisper-bench-"
                  ) -> Iterator[tuple[CrisperSystem, Path]]:
    """Crisper's side of a fresh world: `system_world` for "crisper"."""
    with system_world(args, CrisperSystem.name, prefix) as (system, tmp):
        assert isinstance(system, CrisperSystem)
        yield system, tmp


def one_run(index: int, args: argparse.Namespace, logs: Path,
            run: Callable[[System, argparse.Namespace], Any] = run_system) -> list[Any]:
    """A fresh world, each system in turn (the order alternates between runs), `run` on each."""
    order = args.systems if index % 2 == 0 else list(reversed(args.systems))
    results = []
    with fresh_world(args) as world:
        signals = redis.Redis.from_url(world.signal_url)
        try:
            for name in order:
                system = SYSTEMS[name](world, signals, logs)
                try:
                    results.append(run(system, args))
                finally:
                    system.close()
        finally:
            signals.close()
    return sorted(results, key=lambda f: args.systems.index(f.system))


def repeat(args: argparse.Namespace, run: Callable[[System, argparse.Namespace], Any],
           print_run: Callable[[int, list[Any]], None]) -> tuple[list[list[Any]], list[Load]]:
    """`args.runs` runs of `run` on every system, each after noting the machine's load."""
    runs: list[list[Any]] = []
    loads: list[Load] = []
    with tempfile.TemporaryDirectory(prefix="crisper-bench-") as tmp:
        for i in range(args.runs):
            load = Load.now()
            loads.append(load)
            print(f"run {i + 1}: before it, {load.describe()}", flush=True)
            figures = one_run(i, args, Path(tmp), run)
            print_run(i, figures)
            runs.append(figures)
    return runs, loads


# -- report -----------------------------------------------------------------------------------

def summarize(runs: list[list[RunFigures]], systems: list[str]) -> dict[str, dict[str, float]]:
    summary: dict[str, dict[str, float]] = {}
    for name in systems:
        mine = [f for run in runs for f in run if f.system == name]
        row = {
            "throughput": statistics.median(f.throughput for f in mine),
            "submit_rate": statistics.median(f.submit_rate for f in mine),
            "pickup_p50_ms": statistics.median(percentile(f.pickup_ms, 50) for f in mine),
            "pickup_p99_ms": statistics.median(percentile(f.pickup_ms, 99) for f in mine),
        }
        drains = [f.drain for f in mine if f.drain is not None]
        if drains:
            row["drain"] = statistics.median(drains)
        for part in mine[0].cpu_ms_per_job:
            row[f"cpu_ms_per_job_{part}"] = statistics.median(
                f.cpu_ms_per_job.get(part, 0.0) for f in mine)
        summary[name] = row
    return summary


def print_run(index: int, figures: list[RunFigures]) -> None:
    for f in figures:
        drain = f" drain {f.drain:7.0f} jobs/s" if f.drain is not None else ""
        cpu = " ".join(f"{k}={v:.2f}" for k, v in f.cpu_ms_per_job.items())
        print(f"  run {index + 1} {f.system:8} {f.throughput:7.0f} jobs/s{drain}  "
              f"submit {f.submit_rate:6.0f}/s  pickup p50 {percentile(f.pickup_ms, 50):5.1f} ms "
              f"p99 {percentile(f.pickup_ms, 99):5.1f} ms  cpu ms/job {cpu}", flush=True)


def print_summary(summary: dict[str, dict[str, float]], runs: int) -> None:
    print(f"\nmedians over {runs} run(s):")
    for name, row in summary.items():
        drain = f"  drain {row['drain']:.0f} jobs/s" if "drain" in row else ""
        print(f"{name:8} throughput {row['throughput']:.0f} jobs/s{drain}  "
              f"pickup p50 {row['pickup_p50_ms']:.1f} ms  p99 {row['pickup_p99_ms']:.1f} ms")
    if "celery" in summary and "crisper" in summary:
        ratio = summary["crisper"]["throughput"] / summary["celery"]["throughput"]
        line = f"ratio crisper/celery throughput {ratio:.2f}x"
        if "drain" in summary["crisper"] and "drain" in summary["celery"]:
            line += f"  drain {summary['crisper']['drain'] / summary['celery']['drain']:.2f}x"
        print(line)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", "-n", type=int, default=None, help="jobs per throughput run (2000)")
    p.add_argument("--runs", type=int, default=None, help="repetitions; medians reported (3)")
    p.add_argument("--samples", type=int, default=None, help="pickup samples per run (200)")
    p.add_argument("--warmup", type=int, default=None, help="pickups discarded first (10)")
    p.add_argument("--batch", type=int, default=100,
                   help="jobs per Crisper submit_many call (1: one submit per job)")
    p.add_argument("--no-drain", dest="drain", action="store_false",
                   help="skip the pre-filled queue measurement")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 200 jobs, 20 pickups, 1 run, no drain")
    p.add_argument("--systems", default="celery,crisper", help="comma-separated subset")
    world_options(p)
    p.add_argument("--json", type=Path, help="also write all figures here")
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {"jobs": 200 if quick else 2000, "runs": 1 if quick else 3,
                "samples": 20 if quick else 200, "warmup": 3 if quick else 10}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if quick:
        args.drain = False
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown:
        p.error(f"unknown systems {sorted(unknown)}; known: {sorted(SYSTEMS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    print(f"{args.jobs} no-op jobs, {args.runs} run(s), prefork x2, broker {args.broker}, "
          f"{os.cpu_count()} CPUs; plain Celery profile "
          f"{os.environ.get('BENCH_CELERY_PROFILE', 'acks-late')} (bench/apps/celery_noop.py)",
          flush=True)
    runs, loads = repeat(args, run_system, print_run)
    summary = summarize(runs, args.systems)
    print_summary(summary, args.runs)
    if args.json:
        args.json.write_text(json.dumps({
            "when": time.strftime("%Y-%m-%d %H:%M:%S %z"), "jobs": args.jobs,
            "broker": args.broker, "batch": args.batch, "cpus": os.cpu_count(),
            "loads": [asdict(x) for x in loads], "summary": summary,
            "runs": [[asdict(f) for f in run] for run in runs],
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
