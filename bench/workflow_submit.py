"""How long one call takes to store a wide workflow: a root, a fan-out of N and a fan-in.

Run from the repository root:  .venv/bin/python -m bench.workflow_submit [--nodes 10000]

Each run gets a fresh PostgreSQL schema and a Redis key prefix of its own (the root's one
wake-up message goes there; no worker runs). The clock covers `Workflow.submit()` only:
validating every node's params, the one transaction that inserts the workflow, its N + 2
jobs with their events and its 2N edges, and the root's wake-up after commit. Building the
graph in memory is timed apart; a 2-node workflow submitted first warms the process up
(imports, connection pools), as in a server that has been running.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, func, select, text

from bench.environment import process_cpu
from crisper import Crisper, JobContext, Settings
from crisper.store.db import normalize_url
from crisper.store.models import job_events, jobs, workflow_edges
from tests.harness import delete_prefixed

PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/1"


def item(ctx: JobContext, n: int, source: str = "") -> int:
    return n


@contextmanager
def fresh_app(pg_base: str) -> Iterator[Crisper]:
    schema, prefix = f"bench_wf_{uuid.uuid4().hex[:10]}", f"benchwf{uuid.uuid4().hex[:8]}:"
    admin = create_engine(normalize_url(pg_base))
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    app = Crisper("bench-wf", settings=Settings(
        database_url=f"{pg_base}?options=-csearch_path%3D{schema}&application_name={schema}",
        broker_url=REDIS, broker_prefix=prefix))
    app.job(name="bench.item")(item)
    try:
        app.store.create_all()
        yield app
    finally:
        app.store.close()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
        delete_prefixed(REDIS, prefix)


def server_cpu(app: Crisper) -> float:
    """CPU seconds spent so far by the PostgreSQL backends serving this app (same machine)."""
    with app.store.read() as session:
        name = session.scalar(text("SELECT current_setting('application_name')"))
        pids = session.scalars(text("SELECT pid FROM pg_stat_activity WHERE "
                                    "application_name = :n"), {"n": name}).all()
    return process_cpu([int(p) for p in pids])


def one_run(app: Crisper, nodes: int) -> tuple[float, float, float, float]:
    warm = app.workflow("warm-up")  # imports, pools, prepared types: as in a running server
    warm.add("bench.item", {"n": 1}, after=warm.add("bench.item", {"n": 0}))
    warm.submit()
    started = time.perf_counter()
    wf = app.workflow("fan-out")
    root = wf.add("bench.item", {"n": 0}, name="root")
    fan = wf.map("bench.item", [{"n": i, "source": f"s{i}"} for i in range(nodes)],
                 name="item", after=root)
    wf.add("bench.item", {"n": -1}, name="join", after=fan, receive=True)
    server = server_cpu(app)
    built, cpu = time.perf_counter(), time.process_time()
    view = wf.submit()
    stored, cpu = time.perf_counter(), time.process_time() - cpu
    server = server_cpu(app) - server
    with app.store.read() as session:
        count = session.scalar(select(func.count()).where(jobs.c.workflow_id == view.id))
        edges = session.scalar(select(func.count()).where(
            workflow_edges.c.workflow_id == view.id))
        events = session.scalar(select(func.count()).select_from(job_events))
    assert count == nodes + 2 and edges == 2 * nodes, (count, edges)
    assert events is not None and events >= nodes + 2
    return built - started, stored - built, cpu, server


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=10_000, help="width of the fan-out")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--postgres", default=PG_BASE)
    args = p.parse_args()
    builds, submits, cpus, servers = [], [], [], []
    for run in range(args.runs):
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
        with fresh_app(args.postgres) as app:
            build, submit, cpu, server = one_run(app, args.nodes)
        builds.append(build)
        submits.append(submit)
        cpus.append(cpu)
        servers.append(server)
        print(f"run {run + 1}: build {build * 1000:.0f} ms, submit {submit * 1000:.0f} ms "
              f"wall, CPU {cpu * 1000:.0f} ms client + {server * 1000:.0f} ms PostgreSQL "
              f"({args.nodes + 2} nodes, "
              f"{2 * args.nodes} edges; load {load})", flush=True)
    print(f"median submit of a {args.nodes}-wide fan-out with a fan-in: "
          f"{statistics.median(submits):.2f} s wall; CPU {statistics.median(cpus):.2f} s "
          f"client + {statistics.median(servers):.2f} s PostgreSQL (build "
          f"{statistics.median(builds):.2f} s)")


if __name__ == "__main__":
    main()
