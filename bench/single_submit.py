"""One submit per job, as a web app submitting per request: Crisper's submit() in a loop
against plain Celery's delay() in a loop, end to end, and pickup with and without a backlog.

Run from the repository root:  .venv/bin/python -m bench.single_submit [--quick]

Each run, for each system (the order alternates between runs), on a fresh world:
1. pickup on an idle worker (one job at a time, as bench.throughput measures it);
2. `--jobs` no-op jobs submitted one call each; the clock runs from the first submit until
   every body has run (Celery) / every row is terminal in the database (Crisper);
3. pickup again on that table, then `--backlog` jobs queued on *another* queue (no worker
   consumes it), then pickup once more: it must not grow with other queues' backlog.
Before the runs, what one durable commit costs on this database, back to back and one every
10 ms as between pickups: a Crisper pickup waits for two (its submit's and its claim's)
that plain Celery's does not, so the two figures together say how close to Celery's pickup
Crisper's can come on this machine.
See bench/README.md for the method in detail.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from bench.apps import celery_noop
from bench.environment import World, commit_times_ms
from bench.systems import System
from bench.throughput import (
    SYSTEMS,
    RunFigures,
    measure_pickup,
    measure_throughput,
    percentile,
    repeat,
    world_options,
)
from crisper import Settings


@dataclass
class SingleFigures:
    """One system's figures in one run."""

    system: str
    throughput: float = 0.0  # jobs/s, first submit -> last finished
    submit_rate: float = 0.0  # submit calls/s, submitting alone
    pickup_ms: list[float] = field(default_factory=list)  # on a fresh table
    before_pickup_ms: list[float] = field(default_factory=list)  # after the jobs, no backlog
    backlog_pickup_ms: list[float] = field(default_factory=list)  # the same, with the backlog
    cpu_ms_per_job: dict[str, float] = field(default_factory=dict)


def run_system(system: System, args: argparse.Namespace) -> SingleFigures:
    figures = SingleFigures(system.name)
    system.start_support()
    system.start_worker()
    figures.pickup_ms = measure_pickup(system, args.samples, args.warmup)
    bulk = RunFigures(system.name)
    measure_throughput(system, args.jobs, 1, bulk, each=True)
    figures.throughput, figures.submit_rate = bulk.throughput, bulk.submit_rate
    figures.cpu_ms_per_job = bulk.cpu_ms_per_job
    if args.backlog:
        # Pickup again on the same table, without and then with the other queue's backlog:
        # the two differ only by that backlog.
        figures.before_pickup_ms = measure_pickup(system, args.samples, args.warmup)
        system.fill_other_queue(args.backlog)
        figures.backlog_pickup_ms = measure_pickup(system, args.samples, args.warmup)
    return figures


# -- configuration, as both sides run it --------------------------------------------------------

def postgres_durability(url: str) -> dict[str, str]:
    """fsync and synchronous_commit as the server reports them (the durability promise)."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return {name: str(conn.execute(text(f"SHOW {name}")).scalar())
                    for name in ("fsync", "synchronous_commit", "server_version")}
    finally:
        engine.dispose()


def print_configuration(args: argparse.Namespace) -> dict[str, Any]:
    celery = celery_noop.profile_settings(os.environ["BENCH_CELERY_PROFILE"])
    crisper = Settings()
    config = {
        "celery": {"profile": os.environ["BENCH_CELERY_PROFILE"], **celery,
                   "worker": "prefork, concurrency 2", "broker": args.broker},
        "crisper": {"lease_seconds": getattr(crisper, "lease_seconds", "?"),
                    "worker": "prefork, concurrency 2, scheduler running",
                    "broker": args.broker, **postgres_durability(args.postgres)},
    }
    for side, values in config.items():
        print(f"{side:8} " + ", ".join(f"{k}={v}" for k, v in values.items()))
    return config


def commit_latency(args: argparse.Namespace) -> dict[str, float]:
    """A durable one-row commit's wall time here: p50 back to back, p50 and p99 one every 10
    ms (the machine idling in between, as between pickups)."""
    world = World(pg_base=args.postgres, broker=args.broker, signal_url=args.signal_redis)
    back_to_back = commit_times_ms(world, 500)
    spaced = commit_times_ms(world, 200, gap_seconds=0.01)
    figures = {"back_to_back_p50_ms": percentile(back_to_back, 50),
               "every_10ms_p50_ms": percentile(spaced, 50),
               "every_10ms_p99_ms": percentile(spaced, 99)}
    print(f"a durable one-row commit: p50 {figures['back_to_back_p50_ms']:.2f} ms back to "
          f"back; p50 {figures['every_10ms_p50_ms']:.2f} / p99 "
          f"{figures['every_10ms_p99_ms']:.2f} ms one every 10 ms, as between pickups "
          "(a Crisper pickup waits for two of these that a Celery pickup does not)", flush=True)
    return figures


# -- report -------------------------------------------------------------------------------------

def summarize(runs: list[list[SingleFigures]], systems: list[str]) -> dict[str, dict[str, float]]:
    summary: dict[str, dict[str, float]] = {}
    for name in systems:
        mine = [f for run in runs for f in run if f.system == name]
        row = {"throughput": statistics.median(f.throughput for f in mine),
               "submit_rate": statistics.median(f.submit_rate for f in mine)}
        for key in ("pickup_ms", "before_pickup_ms", "backlog_pickup_ms"):
            samples = [getattr(f, key) for f in mine if getattr(f, key)]
            for q in (50, 99):
                if samples:
                    row[f"{key[:-3]}_p{q}_ms"] = statistics.median(
                        percentile(s, q) for s in samples)
        for part in mine[0].cpu_ms_per_job:
            row[f"cpu_ms_per_job_{part}"] = statistics.median(
                f.cpu_ms_per_job.get(part, 0.0) for f in mine)
        summary[name] = row
    return summary


def pickup_text(samples: list[float]) -> str:
    if not samples:
        return "-"
    return f"{percentile(samples, 50):5.1f}/{percentile(samples, 99):5.1f} ms"


def print_run(index: int, figures: list[SingleFigures]) -> None:
    for f in figures:
        cpu = " ".join(f"{k}={v:.2f}" for k, v in f.cpu_ms_per_job.items())
        print(f"  run {index + 1} {f.system:8} {f.throughput:7.0f} jobs/s  submit "
              f"{f.submit_rate:6.0f}/s  pickup p50/p99 idle {pickup_text(f.pickup_ms)}  "
              f"after the jobs {pickup_text(f.before_pickup_ms)}  "
              f"then with backlog {pickup_text(f.backlog_pickup_ms)}  cpu ms/job {cpu}",
              flush=True)


def print_summary(summary: dict[str, dict[str, float]], runs: int) -> None:
    print(f"\nmedians over {runs} run(s):")
    for name, row in summary.items():
        backlog = (f"  pickup after the jobs p50 {row['before_pickup_p50_ms']:.1f} ms "
                   f"p99 {row['before_pickup_p99_ms']:.1f} ms, then with the backlog p50 "
                   f"{row['backlog_pickup_p50_ms']:.1f} ms "
                   f"p99 {row['backlog_pickup_p99_ms']:.1f} ms"
                   if "backlog_pickup_p50_ms" in row else "")
        print(f"{name:8} single-submit {row['throughput']:.0f} jobs/s  pickup p50 "
              f"{row['pickup_p50_ms']:.1f} ms p99 {row['pickup_p99_ms']:.1f} ms{backlog}")
    if "celery" in summary and "crisper" in summary:
        ratio = summary["crisper"]["throughput"] / summary["celery"]["throughput"]
        print(f"ratio crisper/celery single-submit {ratio:.2f}x")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.single_submit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", "-n", type=int, default=None, help="jobs per run (3000)")
    p.add_argument("--runs", type=int, default=None, help="repetitions; medians (3)")
    p.add_argument("--samples", type=int, default=None, help="pickup samples (200)")
    p.add_argument("--warmup", type=int, default=None, help="pickups discarded first (10)")
    p.add_argument("--backlog", type=int, default=None,
                   help="jobs queued on another queue before the second pickup (20000; 0: skip)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 300 jobs, 20 pickups, backlog 2000, 1 run")
    p.add_argument("--systems", default="celery,crisper", help="comma-separated subset")
    p.add_argument("--celery-profile", choices=celery_noop.PROFILES, default="defaults",
                   help="plain Celery's configuration (defaults: + JSON + ignore_result)")
    world_options(p)
    p.add_argument("--json", type=Path, help="also write all figures here")
    args = p.parse_args(argv)
    defaults = {"jobs": (300, 3000), "runs": (1, 3), "samples": (20, 200), "warmup": (3, 10),
                "backlog": (2000, 20000)}
    for key, (quick, full) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown:
        p.error(f"unknown systems {sorted(unknown)}; known: {sorted(SYSTEMS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    os.environ["BENCH_CELERY_PROFILE"] = args.celery_profile  # read by bench/systems.py
    print(f"{args.jobs} no-op jobs one submit each, {args.runs} run(s), prefork x2, "
          f"backlog {args.backlog} on another queue, {os.cpu_count()} CPUs", flush=True)
    config = print_configuration(args)
    commit = commit_latency(args) if "crisper" in args.systems else {}
    runs, loads = repeat(args, run_system, print_run)
    summary = summarize(runs, args.systems)
    print_summary(summary, args.runs)
    if args.json:
        args.json.write_text(json.dumps({
            "when": time.strftime("%Y-%m-%d %H:%M:%S %z"), "config": config,
            "commit_ms": commit, "loads": [asdict(x) for x in loads], "summary": summary,
            "runs": [[asdict(f) for f in run] for run in runs]}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
