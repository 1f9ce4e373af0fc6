"""Every benchmark of issue 11 in one command, then one table of ratios to plain Celery.

Run from the repository root:  .venv/bin/python -m bench.all [--quick] [--scale-rows N]

Runs, one after the other (each as its own process, its output shown as it goes):
bench.throughput (bulk submit_many), bench.single_submit (one submit per job, pickup idle
and with a backlog on another queue), bench.http_submit (when present) and bench.scale.
The machine is shared: each benchmark prints its load average before each run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.environment import ROOT

Row = tuple[str, str, str, str, str]  # path, celery, crisper, ratio, target


@dataclass
class Bench:
    """One benchmark: its command line (full or quick) and how its figures become rows."""

    module: str
    full: list[str]
    quick: list[str]
    rows: Callable[[dict[str, Any]], list[Row]]
    json: bool = True


def run_bench(bench: Bench, quick: bool, extra: list[str], out: Path) -> dict[str, Any] | None:
    """Run one benchmark as `python -m`, streaming its output; its JSON figures, if any."""
    target = out / f"{bench.module}.json"
    args = [sys.executable, "-m", f"bench.{bench.module}", *(bench.quick if quick else bench.full),
            *extra, *(["--json", str(target)] if bench.json else [])]
    print(f"\n=== {' '.join(args[2:])} (load average {os.getloadavg()[0]:.2f}) ===",
          flush=True)
    done = subprocess.run(args, cwd=ROOT, check=False)
    if done.returncode != 0:
        print(f"!!! bench.{bench.module} exited with {done.returncode}", flush=True)
        return None
    return json.loads(target.read_text()) if bench.json and target.exists() else {}


# -- rows of the summary ------------------------------------------------------------------------

def _ratio(crisper: float, celery: float) -> str:
    return f"{crisper / celery:.2f}x" if celery else "-"


def _pickup(row: dict[str, float], key: str) -> str:
    if f"{key}_p50_ms" not in row:
        return "-"
    return f"{row[f'{key}_p50_ms']:.1f} / {row[f'{key}_p99_ms']:.1f} ms"


def _cpu(row: dict[str, float]) -> str:
    parts = ("worker_main", "worker_pool", "postgres", "redis", "producer")
    return " / ".join(f"{row[f'cpu_ms_per_job_{p}']:.2f}" if f"cpu_ms_per_job_{p}" in row
                      else "-" for p in parts)


def single_rows(figures: dict[str, Any]) -> list[Row]:
    s = figures["summary"]
    ce, cr = s["celery"], s["crisper"]
    return [
        ("one submit() per job vs delay() loop", f"{ce['throughput']:.0f} jobs/s",
         f"{cr['throughput']:.0f} jobs/s", _ratio(cr["throughput"], ce["throughput"]),
         ">= 1.0x"),
        ("pickup p50 / p99, idle worker", _pickup(ce, "pickup"), _pickup(cr, "pickup"), "",
         "<= 3 / 5 ms"),
        ("pickup p50 / p99 after those jobs, no backlog", _pickup(ce, "before_pickup"),
         _pickup(cr, "before_pickup"), "", ""),
        ("pickup p50 / p99, then 20k backlog on another queue", _pickup(ce, "backlog_pickup"),
         _pickup(cr, "backlog_pickup"), "", "must not grow"),
        ("CPU ms/job (single): main / pool / PG / Redis / producer", _cpu(ce), _cpu(cr), "", ""),
        *_commit_rows(figures.get("commit_ms") or {}),
    ]


def _commit_rows(commit: dict[str, float]) -> list[Row]:
    """The database's durable commit, which a Crisper pickup waits for twice (the submit's and
    the claim's) and a Celery pickup not at all."""
    if not commit:
        return []
    return [("durable 1-row commit p50: back to back; one per 10 ms (p99)", "",
             f"{commit['back_to_back_p50_ms']:.2f}; {commit['every_10ms_p50_ms']:.2f} "
             f"({commit['every_10ms_p99_ms']:.2f}) ms", "", "")]


def throughput_rows(figures: dict[str, Any]) -> list[Row]:
    s = figures["summary"]
    ce, cr = s["celery"], s["crisper"]
    rows = [("bulk submit_many (batches of 100)", f"{ce['throughput']:.0f} jobs/s",
             f"{cr['throughput']:.0f} jobs/s", _ratio(cr["throughput"], ce["throughput"]),
             ">= 2.0x")]
    if "drain" in ce and "drain" in cr:
        rows.append(("drain (pre-filled queue)", f"{ce['drain']:.0f} jobs/s",
                     f"{cr['drain']:.0f} jobs/s", _ratio(cr["drain"], ce["drain"]), ""))
    rows.append(("CPU ms/job (bulk): main / pool / PG / Redis / producer", _cpu(ce), _cpu(cr),
                 "", ""))
    return rows


def scale_rows(figures: dict[str, Any]) -> list[Row]:
    worst = max(p99 for _, p99 in figures["list_ms"].values())
    empty, full = figures["empty_ms"] or {}, figures["full_ms"]
    rows = figures["rows"]
    return [
        (f"job list page p99, worst filter, {rows:,} rows", "", f"{worst:.1f} ms", "",
         "< 50 ms"),
        ("hot statements not index-bound", "", str(len(figures["not_index_bound"])), "", "0"),
        (f"submit / claim / outcome p50, empty vs {rows:,} rows", "",
         " ; ".join(f"{k} {empty[k][0]:.1f}->{full[k][0]:.1f} ms" for k in empty), "", ""),
    ]


BENCHES = [
    Bench("single_submit", [], ["--quick"], single_rows),
    Bench("throughput", [], ["--quick"], throughput_rows),
    Bench("http_submit", [], ["--seconds", "3", "--clients", "32"], lambda _: [], json=False),
    Bench("scale", ["--rows", "1000000"], ["--rows", "20000", "--samples", "30"], scale_rows),
]


def print_table(rows: list[Row]) -> None:
    print("\n| path | plain Celery | Crisper | ratio | target |\n"
          "| --- | ---: | ---: | ---: | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.all", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="each benchmark in its smoke form")
    p.add_argument("--only", help="comma-separated subset of: "
                   + ", ".join(b.module for b in BENCHES))
    p.add_argument("--scale-rows", type=int, help="rows for bench.scale (1M; quick 20k)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # Issue 11's baseline for every benchmark here (bench.throughput alone defaults to acks-late)
    os.environ.setdefault("BENCH_CELERY_PROFILE", "defaults")
    chosen = set(args.only.split(",")) if args.only else {b.module for b in BENCHES}
    rows: list[Row] = []
    failed = []
    print(f"bench.all {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="crisper-bench-all-") as tmp:
        for bench in BENCHES:
            if bench.module not in chosen:
                continue
            if not (ROOT / "bench" / f"{bench.module}.py").exists():
                print(f"\n(bench.{bench.module} not present: skipped)")
                continue
            extra = (["--rows", str(args.scale_rows)]
                     if bench.module == "scale" and args.scale_rows else [])
            figures = run_bench(bench, args.quick, extra, Path(tmp))
            if figures is None:
                failed.append(bench.module)
            elif figures:
                rows.extend(bench.rows(figures))
    print_table(rows)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
