"""The producer's instructions per submit: Crisper's submit() loop against plain Celery's
delay() loop, counted by valgrind's callgrind instead of timed.

Run from the repository root:  .venv/bin/python -m bench.producer_instructions

Times on a shared VM swing by tens of percent between runs (docs/benchmarks.md); an
instruction count does not, so a change to the submit path can be judged in one run. Each
system's loop runs twice under callgrind, `--small` and `--large` submits after the same
warm-up, on a fresh world with no worker; the difference divided by the difference in
submits is the cost of one submit, the interpreter's start and imports cancelled out. Only
the producer's own process is counted (its threads included), not PostgreSQL, Redis or a
worker. With no worker, Crisper's wake-up marker stays set after the first submit, so its
loop publishes once; with a worker draining it publishes for 2-8 submits in 100.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile

from bench.environment import ROOT
from bench.systems import CrisperSystem
from bench.throughput import SYSTEMS, system_world, world_options

WARMUP = 5  # submits before the counted ones: connections and pools are made there
COLLECTED = re.compile(r"^==\d+== Collected : (\d+)$", re.MULTILINE)


def instructions(valgrind_output: str) -> int:
    """The total callgrind reports at the end of a run."""
    found = COLLECTED.findall(valgrind_output)
    if len(found) != 1:
        raise ValueError(f"expected one 'Collected' line from callgrind, found {len(found)}")
    return int(found[0])


def per_submit(small: tuple[int, int], large: tuple[int, int]) -> float:
    """Instructions per submit from two runs, each (submits, instructions)."""
    (n_small, i_small), (n_large, i_large) = small, large
    if n_large <= n_small:
        raise ValueError("the large run must submit more than the small one")
    return (i_large - i_small) / (n_large - n_small)


def counted_run(system: str, submits: int, args: argparse.Namespace) -> int:
    """This script's --child loop under callgrind; its instruction total."""
    with tempfile.TemporaryDirectory(prefix="crisper-instr-") as tmp:
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out",
                   sys.executable, "-m", "bench.producer_instructions", "--child", system,
                   str(submits), "--broker", args.broker, "--postgres", args.postgres,
                   "--signal-redis", args.signal_redis]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{system} loop failed:\n{done.stderr[-3000:]}")
    return instructions(done.stderr)


def child(system_name: str, submits: int, args: argparse.Namespace) -> None:
    """The loop itself: a fresh world, no worker, `submits` one call each."""
    with system_world(args, system_name, prefix="crisper-instr-") as (system, _):
        system.submit_each(WARMUP)
        system.submit_each(submits)
        if isinstance(system, CrisperSystem):  # its wake-ups go after submit returns
            assert system.app.jobs.waker.flush()
            queued = system.unfinished()
            if queued != WARMUP + submits:
                raise RuntimeError(f"{queued} jobs queued, not {WARMUP + submits}")
        print(f"{system_name}: {submits} submits after {WARMUP} warm-up ones")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.producer_instructions",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", type=int, default=100, help="submits in the short run (100)")
    p.add_argument("--large", type=int, default=600, help="submits in the long run (600)")
    p.add_argument("--child", nargs=2, metavar=("SYSTEM", "N"), help=argparse.SUPPRESS)
    world_options(p)
    args = p.parse_args(argv)
    if args.child:
        child(args.child[0], int(args.child[1]), args)
        return 0
    version = subprocess.run(["valgrind", "--version"], capture_output=True, text=True)
    print(f"{version.stdout.strip()}; {args.small} and {args.large} submits per system after "
          f"{WARMUP} warm-up ones, no worker; the producer's process only", flush=True)
    counts = {}
    for name in SYSTEMS:
        runs = [(n, counted_run(name, n, args)) for n in (args.small, args.large)]
        counts[name] = per_submit(*runs)
        print(f"{name:8} {counts[name] / 1e6:6.3f} M instructions per submit "
              f"(runs: {runs[0][1]:,} and {runs[1][1]:,})", flush=True)
    print(f"ratio crisper/celery {counts['crisper'] / counts['celery']:.2f}x "
          "(below 1: Crisper's producer does less per submit)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
