"""Where one Crisper job's cost goes: round trips per job counted in a worker, and a profile.

Run from the repository root:  .venv/bin/python -m bench.anatomy [--jobs 200] [--profile]

Round trips are counted inside the pool child that runs the job, from SQLAlchemy's engine
and pool events (statements, BEGIN, COMMIT, pre-ping) and from redis-py's execute_command,
between Celery's task_prerun and task_postrun: claim, body and outcome of one job. The
bench's own marker (one RPUSH per body, paid by plain Celery too) is subtracted.

`--timeline N` then times N pickups on an idle worker stage by stage: the submit, the
wake-up's publish (in this process; out of band, its marker check first), the worker's
receipt, the pool child (out of band, the marker's delete), the claim and the body's start
(bench/apps/probes.py), with medians. `--markers-ab N` times N pickups per side with the
wake-up markers in band and out of band, alternating job by job.
"""

from __future__ import annotations

import argparse
import json
import pstats
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.apps import probes
from bench.environment import World
from bench.systems import CrisperSystem
from bench.throughput import crisper_world, world_options


def collect(system: CrisperSystem, expected: int, timeout: float = 60) -> list[dict[str, int]]:
    """The counts of the Celery tasks that ran `expected` job bodies (a task is a wake-up,
    which may run many jobs; each report says how many as "jobs")."""
    deadline = time.monotonic() + timeout
    while True:
        reports = [json.loads(r) for r in system.signals.lrange(system.count_key, 0, -1)]
        if sum(r.get("jobs", 0) for r in reports) >= expected:
            system.signals.delete(system.count_key)
            return reports
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not report every job's counts")
        time.sleep(0.05)


def average(reports: list[dict[str, int]]) -> dict[str, float]:
    """Per job: the tasks' counts summed, divided by the bodies they ran."""
    total: Counter[str] = Counter()
    for r in reports:
        total.update(r)
    jobs = total.pop("jobs")
    total["redis"] -= jobs  # the bench marker, one per body
    total["redis: RPUSH"] -= jobs
    total["tasks (wake-ups taken)"] = len(reports)
    return {k: v / jobs for k, v in sorted(total.items()) if v}


@contextmanager
def counted_plans(system: CrisperSystem) -> Iterator[list[int]]:
    """Counts the producer's wake-up plans (each checks the markers, itself or through the
    transport's script) while the block runs, in a one-item list."""
    wakes = system.app.dispatcher.wakes
    count = [0]

    def plan(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return type(wakes).plan(wakes, *args, **kwargs)

    wakes.plan = plan  # type: ignore[method-assign]
    try:
        yield count
    finally:
        assert system.app.jobs.waker.flush()
        del wakes.plan


def show(title: str, counts: dict[str, float]) -> None:
    print(f"\n{title}")
    print(f"  wake-up messages taken per job: {counts.get('tasks (wake-ups taken)', 0):.2f}")
    print(f"  database round trips per job: {counts.get('sql', 0):.2f} "
          f"(pool checkouts {counts.get('pool checkouts', 0):.2f}; BEGIN and ROLLBACK of an "
          "autocommit connection are events only)")
    for key, value in counts.items():
        if key.startswith("sql: "):
            print(f"    {value:5.2f}  {key[5:]}")
    print(f"  redis round trips per job (besides the bench marker): {counts.get('redis', 0):.2f}")
    for key, value in counts.items():
        if key.startswith("redis: "):
            print(f"    {value:5.2f}  {key[7:]}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.anatomy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=200, help="jobs in the backlog phase")
    p.add_argument("--idle", type=int, default=20, help="jobs submitted one by one")
    p.add_argument("--profile", choices=["cpu", "wall"],
                   help="also cProfile the pool children, timing CPU or wall-clock time")
    world_options(p)
    p.add_argument("--top", type=int, default=25, help="profile lines shown")
    p.add_argument("--timeline", type=int, default=0, metavar="N",
                   help="also time N pickups on an idle worker, stage by stage")
    p.add_argument("--markers-ab", type=int, default=0, metavar="N",
                   help="also time N pickups per side, alternating wake-up markers in band "
                        "and out of band job by job")
    args = p.parse_args(argv)
    with crisper_world(args, prefix="crisper-anatomy-") as (system, tmp):
        run(system, system.world, args, tmp)
    return 0


def run(system: CrisperSystem, world: World, args: argparse.Namespace, tmp: Path) -> None:
    system.extra_env["BENCH_COUNT_KEY"] = system.count_key
    system.start_worker()
    for _ in range(args.idle):  # an idle worker: one job at a time
        handle = system.submit_one()
        system.wait_pickup()
        system.settle(handle)
    show(f"one job at a time ({args.idle} jobs):", average(collect(system, args.idle)))
    system.reset_signals()
    system.submit(args.jobs, 100)
    system.wait_finished(args.jobs, 120)
    show(f"backlog ({args.jobs} jobs submitted in batches of 100):",
         average(collect(system, args.jobs)))
    system.reset_signals()
    with counted_plans(system) as plans:
        system.submit_each(args.jobs)  # single_submit's path: the worker keeps up with the loop
        system.wait_finished(args.jobs, 120)
    show(f"a loop of submits ({args.jobs} jobs, one submit() each):",
         average(collect(system, args.jobs)))
    print(f"  the producer's wake-up marker checks per submit: {plans[0] / args.jobs:.2f} "
          "(a check covers every job committed before it)")
    system.stop_workers()
    if args.profile:
        profile(system, args, tmp)
    if args.timeline:
        timeline(system, world, args.timeline)
    if args.markers_ab:
        markers_ab(system, args.markers_ab)


def profile(system: CrisperSystem, args: argparse.Namespace, tmp: Path) -> None:
    """cProfile the pool children (task_prerun..task_postrun) over a backlog."""
    system.extra_env.pop("BENCH_COUNT_KEY", None)
    system.extra_env["BENCH_PROFILE_DIR"] = str(tmp)
    system.extra_env["BENCH_PROFILE_CLOCK"] = args.profile
    system.start_worker()
    system.reset_signals()
    jobs = max(args.jobs, 1000)
    system.submit(jobs, 100)
    system.wait_finished(jobs, 120)
    time.sleep(1.0)  # a wake-up's profile is written when its task ends, after its last job
    system.stop_workers()
    stats: pstats.Stats | None = None
    dumps = 0
    for dump in sorted(tmp.glob("child-*.prof")):
        try:
            if stats is None:
                stats = pstats.Stats(str(dump), stream=sys.stdout)
            else:
                stats.add(str(dump))
            dumps += 1
        except (EOFError, ValueError, TypeError):  # a child stopped while writing it
            print(f"(skipped {dump.name}: incomplete)")
    if stats is None:
        print("no profile written (fewer than 100 jobs per child?)")
        return
    print(f"\n{args.profile} profile of {dumps} pool children over {jobs} jobs "
          "(task bodies only):")
    stats.sort_stats("cumulative").print_stats(args.top)
    stats.sort_stats("tottime").print_stats(args.top)


def _next_report(system: CrisperSystem, key: str, since: float) -> Any:
    """The next report on `key` of a job body started after `since` (the worker's marks) or
    of a receipt after it; older ones (a stale wake-up's, which ran no body) are skipped."""
    while True:
        got = system.signals.blpop([key], 10)
        if got is None:
            raise RuntimeError(f"no timeline report on {key}")
        report = json.loads(got[1])
        if isinstance(report, float) and report >= since:
            return report
        if isinstance(report, list) and any(s == "body" and t >= since for s, t in report):
            return report


def _pickup(system: CrisperSystem) -> tuple[float, float]:
    """One job on an idle worker: when its submit began and when its body started (epoch
    seconds), answered once it has finished, its wake-ups are out and a pause has passed.
    `probes.marks` then holds this process's stages of it."""
    probes.marks.clear()
    started = time.time()
    handle = system.submit_one()
    probes.mark("submit returned")
    body = system.wait_pickup()
    system.settle(handle)
    system.app.jobs.waker.flush()
    time.sleep(0.01)
    return started, body


STAGES = ["submit", "submit returned", "publish start", "marker check start", "marker check end",
          "publish end", "received", "pool child", "marker delete start", "marker delete end",
          "claim start", "claim end", "body"]


def timeline(system: CrisperSystem, world: World, samples: int, warmup: int = 10) -> None:
    """One job at a time on an idle worker: the median time between the stages of a pickup.

    The marker check and the publish run on the job service's waker thread, after the submit
    returned; the worker's stages come from bench/apps/probes.py (BENCH_TIMELINE_KEY). With
    the markers in band there is no marker check or delete: the publish and the worker's
    receipt include them.
    """
    from crisper.engine.dispatcher import Dispatcher
    from crisper.engine.wakes import Wakes

    key = f"{world.prefix('sig')}timeline"
    for other in ("BENCH_COUNT_KEY", "BENCH_PROFILE_DIR"):  # their hooks cost time too
        system.extra_env.pop(other, None)
    system.extra_env["BENCH_TIMELINE_KEY"] = key
    system.start_worker()
    check, publish, herald = Wakes.claim, Dispatcher.publish, Dispatcher.herald
    Wakes.claim = _outside_heralds(check)  # type: ignore[method-assign]
    Dispatcher.publish = probes.timed("publish", publish)  # type: ignore[method-assign]
    Dispatcher.herald = _herald_timed(herald)  # type: ignore[method-assign]
    rows: list[dict[str, float]] = []
    try:
        for i in range(warmup + samples):
            started, _ = _pickup(system)
            worker = _next_report(system, key, started)
            received = _next_report(system, f"{key}:received", started)
            # the first time each stage was reached (a claim also follows the job's end)
            row = {stage: at for stage, at in reversed([*probes.marks, *worker])}
            if i >= warmup:
                rows.append({"submit": started, "received": received, **row})
    finally:
        Wakes.claim, Dispatcher.publish = check, publish  # type: ignore[method-assign]
        Dispatcher.herald = herald  # type: ignore[method-assign]
        system.stop_workers()
    print(f"\npickup timeline, one job at a time ({samples} jobs), medians (p90) in ms:")
    # In band (engine/wakes.py), the marker needs no check or delete of its own.
    reached = [stage for stage in STAGES if any(stage in r for r in rows)]
    for before, after in zip(reached, reached[1:], strict=False):
        gaps = sorted((r[after] - r[before]) * 1000 for r in rows if before in r and after in r)
        if gaps:
            print(f"  {before:>18} -> {after:<18} {statistics.median(gaps):6.2f} "
                  f"({gaps[int(len(gaps) * 0.9)]:5.2f})")
    total = [(r["body"] - r["submit"]) * 1000 for r in rows]
    print(f"  {'submit':>18} -> {'body':<18} {statistics.median(total):6.2f}")
    heralded = [r for r in rows if "herald end" in r]
    if heralded:  # beside the submit, on the waker thread (engine/wakes.py: "Heralds")
        starts = [(r["herald start"] - r["submit"]) * 1000 for r in heralded]
        takes = [(r["herald end"] - r["herald start"]) * 1000 for r in heralded]
        print(f"  herald, beside the submit ({len(heralded)} of {len(rows)} pickups): starts "
              f"{statistics.median(starts):.2f} ms after it, takes {statistics.median(takes):.2f}")


_HERALD = threading.local()


def _herald_timed(herald: Any) -> Any:
    """Dispatcher.herald, marked "herald start" and "herald end"; its own marker check is
    not marked (the timeline's marker check is the one after the commit)."""
    timed = probes.timed("herald", herald)

    def marked(*args: Any, **kwargs: Any) -> Any:
        _HERALD.on = True
        try:
            return timed(*args, **kwargs)
        finally:
            _HERALD.on = False
    return marked


def _outside_heralds(check: Any) -> Any:
    """Wakes.claim, marked "marker check start" and "end" unless a herald runs it."""
    timed = probes.timed("marker check", check)

    def marked(*args: Any, **kwargs: Any) -> Any:
        return (check if getattr(_HERALD, "on", False) else timed)(*args, **kwargs)
    return marked


def _out_of_band(_wakes: Any, _app: Any) -> bool:
    return False


def markers_ab(system: CrisperSystem, samples: int, warmup: int = 20) -> None:
    """Pickups on an idle worker, the wake-up's marker in band and out of band in turn (the
    producer chooses per publish; the worker follows each message's header), so that both
    sides meet the same moments of a shared machine."""
    from crisper.engine.wakes import Wakes

    in_band = Wakes.in_band
    system.start_worker()
    system.reset_signals()  # earlier phases' body starts
    picked: dict[bool, list[float]] = {True: [], False: []}
    try:
        for i in range(2 * (warmup + samples)):
            band = i % 2 == 0
            Wakes.in_band = in_band if band else _out_of_band  # type: ignore[method-assign,assignment]
            started, body = _pickup(system)
            if i >= 2 * warmup:
                picked[band].append((body - started) * 1000)
    finally:
        Wakes.in_band = in_band  # type: ignore[method-assign]
        system.stop_workers()
    print(f"\npickup, markers in band vs out of band, alternating ({samples} jobs each), ms:")
    for band, label in ((True, "in band"), (False, "out of band")):
        xs = sorted(picked[band])
        print(f"  {label:>11}  p50 {statistics.median(xs):6.2f}  "
              f"p90 {xs[int(len(xs) * .9)]:6.2f}  p99 {xs[int(len(xs) * .99)]:6.2f}")


if __name__ == "__main__":
    sys.exit(main())
