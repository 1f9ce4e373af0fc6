"""How fast the database alone records outcomes and claims jobs: the bulk path's upper bound.

Run from the repository root:  .venv/bin/python -m bench.claim_ceiling [--jobs 4000 --runs 3]

In a backlog a pool slot spends one statement per job: the outcome of the job it ran and the
claim of the queue's next one (`attempts.finish_then_claim_next`), one durable commit. Here
two client processes, like the two slots of `bench.throughput`, drain a queue of `--jobs`
no-op jobs with exactly that statement and nothing else: no Celery, no broker, no job body,
no submits meanwhile. Their rate is what Crisper's bulk drain could reach on this machine
if everything but the database cost nothing; the PostgreSQL CPU per job is that of the
statement alone. Compare it with plain Celery's rate from `bench.throughput` in the same
hour: a bulk target above this rate cannot be met while every job keeps its own claim.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

from sqlalchemy import Engine, text

from bench.apps.crisper_noop import JOB
from bench.environment import process_cpu
from bench.scale import load, table_size
from bench.systems import CrisperSystem
from bench.throughput import Load, crisper_world, world_options
from crisper import SubmitRequest
from crisper.states import JobState
from crisper.store import attempts as attempt_sql
from crisper.store import utcnow
from crisper.store.db import make_engine

CLIENTS = 2
WORKER = "bench@claim-ceiling"


@dataclass(frozen=True)
class Drained:
    """What one client did: jobs finished, its backend's and its own CPU seconds, wall time."""

    jobs: int
    server_cpu: float
    client_cpu: float
    seconds: float


def drain(database_url: str, queue: str, done: Queue,  # type: ignore[type-arg]
          ready: Barrier, progress: Any, slot: int) -> None:
    """One slot's loop: claim, then outcome + next claim in one statement until none is left.
    `progress[slot]` counts its jobs as it goes, for the parent's interval reports."""
    engine = make_engine(database_url, autocommit=True)  # the engine a pool slot claims on
    with engine.connect() as conn:
        backend = int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
        types = [JOB]
        ready.wait()  # both slots connected: they start together
        server0, client0 = process_cpu([backend]), time.process_time()
        start = time.perf_counter()
        job, jobs = attempt_sql.claim_next(conn, queue, types, WORKER, "t", 30, utcnow()), 0
        while job is not None:
            job = attempt_sql.finish_then_claim_next(
                conn, job.id, job.lease_token, JobState.SUCCEEDED, utcnow(), reason="succeeded",
                worker=WORKER, queue=queue, types=types, task_id="t", lease_seconds=30).claimed
            jobs += 1
            progress[slot] = jobs
        done.put(Drained(jobs, process_cpu([backend]) - server0, time.process_time() - client0,
                         time.perf_counter() - start))
    engine.dispose()


def one_run(system: CrisperSystem, jobs: int, analyze: bool = False, every: float = 0
            ) -> tuple[float, float, float]:
    """Jobs/s of CLIENTS slots draining `jobs` queued jobs; server and client CPU ms per job.
    `analyze`: statistics taken of the queued backlog first, as autovacuum takes them.
    `every`: seconds between interval reports (none if 0)."""
    for start in range(0, jobs, 500):
        system.app.submit_many([SubmitRequest(type=JOB)] * min(500, jobs - start))
    if analyze:
        with system.app.store.engine.begin() as conn:
            conn.execute(text("ANALYZE crisper_jobs"))
            conn.execute(text("ANALYZE crisper_queues"))
    # Spawned, not forked: a fork while the submits' waker thread holds a lock of its Redis
    # pool left the child stuck in kombu's after-fork cleanup (seen under CI's load).
    spawn = multiprocessing.get_context("spawn")
    done: Queue = spawn.Queue()  # type: ignore[type-arg]
    queue = system.world.queue(system.name)
    ready = spawn.Barrier(CLIENTS)
    progress = spawn.Array("q", CLIENTS, lock=False)
    slots = [spawn.Process(target=drain, args=(system.world.database_url, queue, done, ready,
                                               progress, slot))
             for slot in range(CLIENTS)]
    for slot in slots:
        slot.start()
    if every:
        report_intervals(system.app.store.engine, progress, jobs, every)
    results = [done.get(timeout=600) for _ in slots]
    for slot in slots:
        slot.join()
    finished = sum(r.jobs for r in results)
    if finished != jobs:
        raise RuntimeError(f"the slots finished {finished} of {jobs} jobs")
    rate = finished / max(r.seconds for r in results)
    return (rate, sum(r.server_cpu for r in results) * 1000 / finished,
            sum(r.client_cpu for r in results) * 1000 / finished)


@dataclass(frozen=True)
class Tally:
    """Jobs drained so far, when, and the claim index's and the table's counters then."""

    jobs: int
    at: float
    index_blocks: int
    index_pages: int
    dead_tuples: int
    autovacuums: int

    @classmethod
    def now(cls, engine: Engine, progress: Any) -> Tally:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
            row = conn.execute(text(
                "SELECT i.idx_blks_hit + i.idx_blks_read, pg_relation_size(i.indexrelid) / 8192,"
                " t.n_dead_tup, t.autovacuum_count"
                " FROM pg_statio_user_indexes i JOIN pg_stat_user_tables t USING (relid)"
                " WHERE i.indexrelname = 'ix_crisper_jobs_next_in_queue'"
                " AND i.schemaname = current_schema()")).one()
        return cls(sum(progress), time.perf_counter(), *(int(v) for v in row))


def report_intervals(engine: Engine, progress: Any, jobs: int, every: float) -> None:
    """Until the drain ends, every `every` seconds: its rate, the claim index's pages read per
    job, the table's dead tuples and autovacuums so far. A claim steps over the index entries
    of the jobs claimed since the last vacuum, so the pages per job show that cost growing."""
    last = Tally.now(engine, progress)
    while last.jobs < jobs:
        time.sleep(every)
        now = Tally.now(engine, progress)
        done = now.jobs - last.jobs
        print(f"    {now.jobs:9,} done  {done / (now.at - last.at):6.0f} jobs/s  claim index "
              f"{(now.index_blocks - last.index_blocks) / max(done, 1):6.1f} pages read per job "
              f"(of {now.index_pages:,})  dead tuples {now.dead_tuples:,}  autovacuums "
              f"{now.autovacuums}", flush=True)
        last = now


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.claim_ceiling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=4000)
    p.add_argument("--runs", type=int, default=3, help="repetitions; medians reported")
    p.add_argument("--analyze", action="store_true",
                   help="ANALYZE the tables once the jobs are queued (autovacuum does, on a "
                        "server that runs it): the claims then run on plans made from a backlog")
    p.add_argument("--history", type=int, default=0, metavar="ROWS",
                   help="load ROWS finished jobs first (as bench.scale does): a long-lived "
                        "table, whose size sets when autovacuum cleans the claim index")
    p.add_argument("--every", type=float, default=0, metavar="SECONDS",
                   help="print the drain's rate, the claim index's pages read per job and the "
                        "autovacuums so far every SECONDS (PostgreSQL publishes its counters "
                        "about once a second: take several)")
    world_options(p)
    args = p.parse_args(argv)
    print(f"{args.jobs} queued no-op jobs drained by {CLIENTS} clients with the outcome+claim "
          f"statement alone, {args.runs} run(s)", flush=True)
    figures = []
    for i in range(args.runs):
        print(f"run {i + 1}: before it, {Load.now().describe()}", flush=True)
        figures.append(_fresh_run(args))
        rate, server, client = figures[-1]
        print(f"  {rate:7.0f} jobs/s  PostgreSQL {server:.3f} ms/job  clients {client:.3f} "
              f"ms/job", flush=True)
    rate, server, client = (statistics.median(f[k] for f in figures) for k in range(3))
    print(f"median: {rate:.0f} jobs/s, PostgreSQL {server:.3f} ms CPU per job, clients "
          f"{client:.3f} ms")
    return 0


def _fresh_run(args: argparse.Namespace) -> tuple[float, float, float]:
    with crisper_world(args) as (system, _):
        _durability(system)
        if args.history:
            took = load(system.app.store.engine, args.history)
            print(f"  loaded {args.history:,} finished jobs in {sum(took.values()):.0f} s; "
                  f"crisper_jobs with indexes: {table_size(system.app.store.engine)}",
                  flush=True)
        return one_run(system, args.jobs, args.analyze, args.every)


def _durability(system: CrisperSystem) -> None:
    with system.app.store.engine.connect() as conn:
        fsync = conn.execute(text("SHOW fsync")).scalar_one()
        sync = conn.execute(text("SHOW synchronous_commit")).scalar_one()
        vacuum = conn.execute(text("SHOW autovacuum")).scalar_one()
    # autovacuum: whether the server cleans the claim index's dead entries and takes
    # statistics during a long drain (see --analyze)
    print(f"  fsync={fsync}, synchronous_commit={sync}, autovacuum={vacuum}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
