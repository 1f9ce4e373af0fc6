"""Crisper's hot statements and the job list on a table of millions of finished jobs.

Run from the repository root:  .venv/bin/python -m bench.scale [--rows 10000000]

In a fresh schema: time submit, claim and outcome on the empty table; load `--rows` finished
jobs (one INSERT … SELECT over generate_series, secondary indexes built afterwards); show
EXPLAIN (ANALYZE, BUFFERS) of the statements the store runs for the claim, the outcome and
the relay (captured from crisper/store's own functions, not copied SQL); time a page of the
job list as GET /v1/jobs reads it (unfiltered, by state, type, queue, and a deep keyset page);
time submit, claim and outcome again. The schema is dropped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Uuid,
    case,
    cast,
    event,
    func,
    insert,
    literal,
    literal_column,
    select,
    table,
)
from sqlalchemy.orm import Session

from bench.apps import crisper_noop
from bench.environment import World, create_schema, delete_prefixed, postgres_schema
from crisper import Crisper, Settings
from crisper.states import JobState
from crisper.store import attempts, sweeps
from crisper.store.migrate import upgrade
from crisper.store.models import jobs

PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/3"
TENANT = "default"  # GET /v1/jobs always filters by the key's tenant
LIVE_QUEUE = "live"
WORKER = "bench@scale"
RARE_QUEUE, RARE_TYPE = "archive", "bench.legacy"  # only in the oldest 1% of rows
SPAN = timedelta(days=90)  # the loaded jobs were created over the last 90 days


# -- the load ---------------------------------------------------------------------------------

def load_statement(first: int, rows: int, total: int, start: datetime) -> Any:
    """INSERT … SELECT over generate_series: `rows` finished jobs with time-ordered ids.

    90% succeeded, 8% failed, 2% cancelled; 20 types and 4 queues in turn, except the oldest
    1% of rows, which alone use RARE_TYPE and RARE_QUEUE (the worst case for newest-first).
    """
    g = func.generate_series(first, first + rows - 1).column_valued("g")
    step = max(1, int(SPAN.total_seconds() * 1000) // max(1, total))
    millis = literal(int(start.timestamp() * 1000), BigInteger()) + g * literal(step, BigInteger())
    made = func.to_timestamp(millis / 1000.0)
    hexid = func.concat(func.lpad(func.to_hex(millis), 12, "0"), "70008000",
                        func.lpad(func.to_hex(g), 12, "0"))
    old = g <= total // 100
    state = case((g % 100 < 90, "succeeded"), (g % 100 < 98, "failed"), else_="cancelled")
    columns = {
        "id": cast(hexid, Uuid()),
        "type": case((old, RARE_TYPE), else_=func.concat("bench.t", g % 20)),
        "queue": case((old, RARE_QUEUE), else_=func.concat("q", g % 4)), "state": state,
        "tenant": literal(TENANT), "params": literal({}, jobs.c.params.type),
        "tags": literal([], jobs.c.tags.type), "retry_policy": literal({}, jobs.c.params.type),
        "attempt": literal(1), "max_attempts": literal(1), "created_at": made,
        "queued_at": made, "started_at": made, "finished_at": made,
    }
    return insert(jobs).from_select(list(columns), select(*columns.values()))


def load(engine: Engine, rows: int, chunk: int = 1_000_000) -> dict[str, float]:
    """Drop the jobs table's secondary indexes, insert in chunks, rebuild them, ANALYZE."""
    start = datetime.now(UTC) - SPAN - timedelta(days=1)
    with engine.connect() as conn:
        present: set[str] = set(conn.scalars(select(literal_column("indexname")).select_from(
            table("pg_indexes")).where(literal_column("schemaname") == func.current_schema())))
    secondary = [ix for ix in jobs.indexes if ix.name in present]
    took: dict[str, float] = {}
    with engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '512MB'")
        for ix in secondary:
            ix.drop(conn, checkfirst=True)
    t0 = time.perf_counter()
    for first in range(1, rows + 1, chunk):
        with engine.begin() as conn:
            conn.execute(load_statement(first, min(chunk, rows - first + 1), rows, start))
        print(f"  loaded {min(rows, first + chunk - 1):,} rows", flush=True)
    took["insert_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '512MB'")
        for ix in secondary:
            ix.create(conn, checkfirst=True)
    took["indexes_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE crisper_jobs")
    took["vacuum_analyze_s"] = time.perf_counter() - t0
    return took


def table_size(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.exec_driver_sql(
            "SELECT pg_size_pretty(pg_total_relation_size('crisper_jobs'))").scalar())


# -- the statements the store runs, captured and explained -----------------------------------

@contextlib.contextmanager
def captured() -> Iterator[list[tuple[str, Any]]]:
    """Every statement SQLAlchemy sends while the block runs, with its driver parameters."""
    seen: list[tuple[str, Any]] = []

    def grab(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", grab)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", grab)


def is_setting(sql: str) -> bool:
    """Whether a captured statement is a SET (a path's `SET LOCAL enable_sort = off`, say),
    which a replay runs as it ran rather than explains."""
    return sql.lstrip().upper().startswith("SET ")


def claim_path(conn: Connection) -> None:
    """What a worker's pool child runs for a wake-up on a queue with two jobs: the first
    claim, the first job's outcome with the claim of the next (one statement, as for every
    job of a backlog), and the last outcome alone."""
    now = datetime.now(UTC)
    types = [crisper_noop.JOB]
    first = attempts.claim_next(conn, LIVE_QUEUE, types, WORKER, "task-1", 60, now)
    if first is None:
        raise RuntimeError(f"no queued job on {LIVE_QUEUE} to claim")
    fused = attempts.finish_then_claim_next(
        conn, first.id, first.lease_token, JobState.SUCCEEDED, now, reason="succeeded",
        worker=WORKER, queue=LIVE_QUEUE, types=types, task_id="task-1", lease_seconds=60)
    if fused.claimed is None:
        raise RuntimeError(f"a second queued job on {LIVE_QUEUE} was not claimed")
    attempts.finish(conn, fused.claimed.id, fused.claimed.lease_token, JobState.SUCCEEDED, now,
                    reason="succeeded", result=None, notifies=fused.claimed.notifies)


def relay_path(conn: Connection) -> None:
    """What the relay runs each beat: lost messages, unsent ones, stale queues."""
    now = datetime.now(UTC)
    session = Session(bind=conn)
    sweeps.dispatched_before(session, now - timedelta(minutes=5), 100)
    sweeps.undispatched(session, 100, (), now)
    sweeps.queues_with_stale_dispatch(session, now - timedelta(minutes=5))
    sweeps.promote_due(session, now, 100)
    sweeps.expired_leases(session, now, 100)


Step = Callable[[Connection], None]
PATHS: dict[str, Step] = {"claim + outcome": claim_path, "relay + timers": relay_path}


def list_paths(app: Crisper) -> dict[str, Step]:
    """Each page of list_cases as a path (they read through the app's own engine)."""
    def path(call: Callable[[], Any]) -> Step:
        return lambda _conn: call()
    return {f"list: {name}": path(call) for name, call in list_cases(app).items()}


WALK_LIMIT = 10_000  # rows a statement may read and discard before it counts as a scan


@dataclass
class Plan:
    path: str
    statement: str
    plan: str

    @property
    def seq_scans(self) -> list[str]:
        """Sequential scans of the jobs table: a plan that is not index-bound."""
        return [line.strip() for line in self.plan.splitlines()
                if "Seq Scan on crisper_jobs" in line]

    @property
    def filtered(self) -> int:
        """The most rows one node of the plan read and threw away (an index walked too far)."""
        return max([int(n) for n in re.findall(r"Rows Removed by Filter: (\d+)", self.plan)],
                   default=0)

    @property
    def index_bound(self) -> bool:
        return not self.seq_scans and self.filtered < WALK_LIMIT

    @property
    def verdict(self) -> str:
        if self.seq_scans:
            return "NOT index-bound: " + "; ".join(self.seq_scans)
        if self.filtered >= WALK_LIMIT:
            return f"NOT index-bound: an index walk threw away {self.filtered:,} rows"
        return "index-bound"

    @property
    def execution_ms(self) -> float:
        found = re.search(r"Execution Time: ([\d.]+) ms", self.plan)
        return float(found.group(1)) if found else float("nan")


def explain(engine: Engine, paths: dict[str, Step], force_index: bool = False) -> list[Plan]:
    """Run each path once to capture its statements, then replay them under EXPLAIN ANALYZE
    in one transaction that is rolled back (so the table is left as it was)."""
    plans = []
    for name, path in paths.items():
        with engine.connect() as conn:
            with captured() as seen, conn.begin() as trans:
                path(conn)
                trans.rollback()
            with conn.begin() as trans:
                if force_index:  # a tiny table: ask whether an index *can* serve the statement
                    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
                for sql, params in seen:
                    if is_setting(sql):  # as the path set it (never_sort)
                        conn.exec_driver_sql(sql, params)
                        continue
                    if "crisper_jobs" not in sql:
                        continue
                    rows = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
                    plans.append(Plan(name, " ".join(sql.split()), "\n".join(r[0] for r in rows)))
                trans.rollback()
    return plans


def seed_live(app: Crisper, count: int) -> None:
    """A few queued jobs on the live queue, for the claim to find."""
    app.submit_many([crisper_noop_request() for _ in range(count)])


def crisper_noop_request() -> Any:
    from crisper import SubmitRequest

    return SubmitRequest(type=crisper_noop.JOB, queue=LIVE_QUEUE)


# -- timings ----------------------------------------------------------------------------------

def percentiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=100, method="inclusive")
    return q[49], q[98]


def timed(call: Callable[[], Any], samples: int, warmup: int = 3,
          budget: float = 20.0) -> list[float]:
    """Latencies in ms; a call that is far too slow stops after `budget` seconds of samples."""
    out: list[float] = []
    began = time.perf_counter()
    for i in range(warmup + samples):
        t0 = time.perf_counter()
        call()
        if i >= warmup or t0 - began > budget:
            out.append((time.perf_counter() - t0) * 1000)
        if time.perf_counter() - began > budget and len(out) >= 3:
            break
    return out


def list_cases(app: Crisper) -> dict[str, Callable[[], Any]]:
    """A page of 50 the way GET /v1/jobs reads it (crisper.list_jobs with the key's tenant)."""
    middle = app.list_jobs(tenant=TENANT, created_before=datetime.now(UTC) - SPAN / 2, limit=1)
    cursor = middle.items[0].id if middle.items else None

    def page(**f: Any) -> Callable[[], Any]:
        return lambda: app.list_jobs(tenant=TENANT, limit=50, **f)

    return {
        "unfiltered": page(), "state=failed": page(state="failed"),
        "state=cancelled": page(state="cancelled"),
        "state=queued (few)": page(state="queued"),
        "type=bench.t7": page(type="bench.t7"), f"type={RARE_TYPE} (oldest 1%)":
            page(type=RARE_TYPE),
        "queue=q1": page(queue="q1"), f"queue={RARE_QUEUE} (oldest 1%)": page(queue=RARE_QUEUE),
        "keyset: page at mid-table": page(before=cursor),
        "keyset: state=failed at mid-table": page(state="failed", before=cursor),
    }


def job_cycle(app: Crisper, samples: int) -> dict[str, list[float]]:
    """submit() one job (public API, wake-up published), then claim and finish it through the
    store's functions on an autocommit connection, as a pool child does."""
    out: dict[str, list[float]] = {"submit": [], "claim": [], "outcome": []}
    for _ in range(samples):
        t0 = time.perf_counter()
        handle = app.submit(crisper_noop.JOB, queue=LIVE_QUEUE)
        t1 = time.perf_counter()
        with app.store.autocommit() as conn:
            held = attempts.claim(conn, [handle.id], "bench@scale", "t", 60, datetime.now(UTC),
                                  skip_paused=True, job_type=crisper_noop.JOB, queue=LIVE_QUEUE)
            t2 = time.perf_counter()
            attempts.finish(conn, held[0].id, held[0].lease_token, JobState.SUCCEEDED,
                            datetime.now(UTC), reason="succeeded", notifies=held[0].notifies)
            t3 = time.perf_counter()
        out["submit"].append((t1 - t0) * 1000)
        out["claim"].append((t2 - t1) * 1000)
        out["outcome"].append((t3 - t2) * 1000)
    return out


def print_timings(title: str, timings: dict[str, list[float]]) -> dict[str, tuple[float, float]]:
    print(f"\n{title}")
    result = {}
    for name, values in timings.items():
        p50, p99 = percentiles(values)
        result[name] = (p50, p99)
        print(f"  {name:38} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  ({len(values)} samples)")
    return result


def print_plans(plans: list[Plan]) -> None:
    print("\nserver execution time of each statement (EXPLAIN ANALYZE), and its verdict:")
    for p in plans:
        print(f"  {p.path:45} {p.execution_ms:10.3f} ms  "
              f"{'index-bound' if p.index_bound else 'NOT INDEX-BOUND'}  {p.statement[:50]}")
    for p in plans:
        print(f"\n[{p.path}] {p.verdict}\n  {p.statement[:300]}")
        print("\n".join("    " + line for line in p.plan.splitlines()))


# -- main -------------------------------------------------------------------------------------

@contextlib.contextmanager
def schema_for(world: World, reuse: bool, keep: bool) -> Iterator[None]:
    """The run's schema: fresh, or reused (--reuse); dropped at the end unless --keep."""
    if not keep:
        with postgres_schema(world, create=not reuse):
            yield
        return
    if not reuse:
        create_schema(world)
    yield
    print(f"schema {world.schema} kept: --reuse {world.token} measures it again "
          f"(DROP SCHEMA {world.schema} CASCADE when done)", flush=True)


@contextlib.contextmanager
def scale_world(postgres: str, redis_url: str, revision: str, reuse: str | None = None,
                keep: bool = False) -> Iterator[Crisper]:
    world = World(pg_base=postgres, broker=redis_url, signal_url=redis_url)
    if reuse:
        world.token = reuse
    schema = schema_for(world, bool(reuse), keep)
    with schema:
        settings = Settings(database_url=world.database_url, broker_url=redis_url,
                            broker_prefix=world.prefix("scale"))
        app = crisper_noop.build(settings, queue=LIVE_QUEUE)
        upgrade(app.store, revision)
        try:
            yield app
        finally:
            app.store.close()
            delete_prefixed(redis_url, f"bench{world.token}:")


def measure_reads(app: Crisper, args: argparse.Namespace, label: str) -> dict[str, Any]:
    """EXPLAIN every hot statement and list page, then time the list pages."""
    paths = {**PATHS, **list_paths(app)}
    plans = explain(app.store.engine, paths, force_index=args.force_index)
    print_plans(plans)
    lists = {name: timed(call, args.samples) for name, call in list_cases(app).items()}
    return {"plans": plans, "not_index_bound": [p.path for p in plans if not p.index_bound],
            "list": print_timings(f"a page of 50 jobs (GET /v1/jobs), {label}", lists)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with scale_world(args.postgres, args.redis, args.before or "head", args.reuse,
                     args.keep) as app:
        if args.reuse:
            print(f"reusing schema bench_{args.reuse}: {table_size(app.store.engine)}")
        else:
            out["empty"] = print_timings("submit / claim / outcome, empty table",
                                         job_cycle(app, args.samples))
            print(f"\nloading {args.rows:,} finished jobs", flush=True)
            took = load(app.store.engine, args.rows)
            print(f"  took: {', '.join(f'{k} {v:.0f} s' for k, v in took.items())}; "
                  f"crisper_jobs with indexes: {table_size(app.store.engine)}", flush=True)
            seed_live(app, 200)
        label = f"{args.rows:,} rows" + (f", schema at {args.before}" if args.before else "")
        print(f"\n== {label} ==")
        out.update(measure_reads(app, args, label))
        if args.before:
            t0 = time.perf_counter()
            upgrade(app.store)
            print(f"\n== {args.rows:,} rows, after the migrations up to head "
                  f"({time.perf_counter() - t0:.0f} s) ==")
            out["before"] = out["list"]
            out.update(measure_reads(app, args, f"{args.rows:,} rows, schema at head"))
        out["full"] = print_timings(f"submit / claim / outcome, {args.rows:,} rows",
                                    job_cycle(app, args.samples))
    return out


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=10_000_000, help="finished jobs to load (10M)")
    p.add_argument("--samples", type=int, default=200, help="timed calls per query (200)")
    p.add_argument("--force-index", action="store_true",
                   help="EXPLAIN with enable_seqscan off (tiny tables: can an index serve it?)")
    p.add_argument("--before", metavar="REVISION",
                   help="load and measure at this migration (e.g. 0015), then upgrade to head "
                        "and measure again: an index's before/after")
    p.add_argument("--keep", action="store_true", help="leave the loaded schema in place")
    p.add_argument("--reuse", metavar="TOKEN",
                   help="measure the schema bench_TOKEN a --keep run left (no load); --rows "
                        "should say how many it holds")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--postgres", default=PG_BASE)
    p.add_argument("--redis", default=REDIS, help="broker for the submits (a private prefix)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f} before the run", flush=True)
    out = run(args)
    slow = [name for name, (_, p99) in out["list"].items() if p99 >= 50]
    print(f"\nlist pages over 50 ms p99: {slow or 'none'}; "
          f"statements not index-bound: {len(out['not_index_bound'])}")
    if args.json:
        args.json.write_text(json.dumps({
            "rows": args.rows, "list_ms": out["list"], "list_before_ms": out.get("before"),
            "not_index_bound": out["not_index_bound"], "empty_ms": out.get("empty"),
            "full_ms": out["full"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
