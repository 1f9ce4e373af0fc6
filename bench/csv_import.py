"""CSV import of a 12-column product file into PostgreSQL: three ways, in one run.

    .venv/bin/python -m bench.csv_import [--rows 500000] [--orm-rows 5000] [--small 100000]

1. naive: the row-by-row ORM insert teams write first (a model per row, session.add,
   commit per row), on the first --orm-rows rows only, extrapolated (labelled so);
2. shop: the examples/shop method (csv.DictReader, a pydantic model per row, 1000-row
   INSERT … ON CONFLICT batches through SQLAlchemy), on the whole file;
3. built-in: crisper.contrib.csv_import's job body (per-column validation; each chunk
   COPYed into a temporary stage, its repeated keys found and merged on a loader thread
   while the next is read), on the whole file, then on the --small file too, so that peak memory
   can be compared across sizes.

Each runs in a child process of its own (peak RSS is the child's), into an empty table of a
schema made for this run and dropped after. Load averages and the share of idle CPU (others'
work on a shared machine) are printed with the figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg

from bench import gen_products
from bench.apps.products import DDL, ProductRow
from bench.environment import cpu_idle_fraction

PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rows_of(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        yield from csv.DictReader(f)


def naive(path: Path, url: str, table: str, limit: int) -> Callable[[], int]:
    """Row by row through the ORM: validate, merge (insert or update by key), commit."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import DeclarativeBase, Session

    class Base(DeclarativeBase):
        pass

    from sqlalchemy import Table
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    product_table = Table(table, Base.metadata, autoload_with=engine)

    class Product(Base):
        __table__ = product_table

    def run() -> int:
        done = 0
        with Session(engine) as session:
            for raw in rows_of(path):
                row = ProductRow.model_validate(raw)
                session.merge(Product(**row.model_dump()))
                session.commit()
                done += 1
                if done >= limit:
                    break
        return done

    return run


def shop(path: Path, url: str, table: str, batch_rows: int = 1000) -> Callable[[], int]:
    """The examples/shop method on the 12-column file."""
    from sqlalchemy import MetaData, Table, create_engine
    from sqlalchemy.dialects.postgresql import insert

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    target = Table(table, MetaData(), autoload_with=engine)
    others = [c for c in ProductRow.model_fields if c != "sku"]

    def save(rows: list[dict[str, Any]]) -> None:
        stmt = insert(target)
        stmt = stmt.on_conflict_do_update(index_elements=["sku"],
                                          set_={c: stmt.excluded[c] for c in others})
        with engine.begin() as conn:
            conn.execute(stmt, rows)

    def run() -> int:
        done, batch = 0, []
        for raw in rows_of(path):
            batch.append(ProductRow.model_validate(raw).model_dump())
            if len(batch) >= batch_rows:
                save(batch)
                done, batch = done + len(batch), []
        if batch:
            save(batch)
        return done + len(batch)

    return run


def builtin(path: Path, url: str, table: str) -> Callable[[], int]:
    """The built-in job type's body, with a context of its own (no worker)."""
    from crisper import Crisper, Settings
    from crisper.contrib.csv_import import csv_import
    from crisper.engine.context import JobContext

    app = Crisper("bench", settings=Settings(database_url=url))
    spec = csv_import(app, name="bench.import", model=ProductRow, table=table, key=("sku",),
                      folder=path.parent)
    ctx = JobContext(job_id=uuid.uuid4(), job_type="bench.import", attempt=1, max_attempts=1,
                     lease_token=uuid.uuid4(), lease_seconds=1e9, max_log_lines=100)

    def run() -> int:
        result = spec.run(ctx, path.name)
        print(json.dumps({"timings": result["timings"]}), file=sys.stderr)
        return int(result["imported"])

    return run


def rss_now_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(args: argparse.Namespace) -> None:
    """One way, in this process: set up (imports, engine, app) off the clock, then run."""
    if args.child == "naive":
        run = naive(args.file, args.url, args.table, args.orm_rows)
    elif args.child == "shop":
        run = shop(args.file, args.url, args.table)
    else:
        run = builtin(args.file, args.url, args.table)
    baseline = rss_now_mb()
    cpu0 = time.process_time()
    started = time.perf_counter()
    rows = run()
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    print(json.dumps({"rows": rows, "seconds": seconds, "cpu_seconds": cpu,
                      "peak_rss_mb": peak_rss_mb(),
                      "rss_at_start_mb": baseline}))


def run_child(way: str, file: Path, url: str, table: str, orm_rows: int) -> dict[str, Any]:
    load = os.getloadavg()[0]
    out = subprocess.run(
        [sys.executable, "-m", "bench.csv_import", "--child", way, "--file", str(file),
         "--url", url, "--table", table, "--orm-rows", str(orm_rows)],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if out.stderr.strip().startswith("{"):
        figures.update(json.loads(out.stderr.strip().splitlines()[-1]))
    figures["load_before"] = load
    figures["load_after"] = os.getloadavg()[0]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--orm-rows", type=int, default=5000)
    parser.add_argument("--skip", default="", help="comma-separated: naive,shop")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child")
    parser.add_argument("--file", type=Path)
    parser.add_argument("--url")
    parser.add_argument("--table")
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    schema = f"bench_csv_{uuid.uuid4().hex[:8]}"
    url = f"{PG_BASE}?options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            report = measure(args, Path(tmp), url)
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def measure(args: argparse.Namespace, tmp: Path, url: str) -> dict[str, Any]:
    big, small = tmp / "products.csv", tmp / "products_small.csv"
    gen_products.write(big, args.rows)
    gen_products.write(small, args.small)
    idle = cpu_idle_fraction(2.0)
    print(f"file: {args.rows} rows, {big.stat().st_size / 1e6:.1f} MB; {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}, idle before start {idle:.0%}")
    plan = [("naive", big, args.orm_rows), ("shop", big, args.rows),
            ("built-in", big, args.rows), ("built-in", small, args.small)]
    skip = set(filter(None, args.skip.split(",")))
    report: dict[str, Any] = {"rows": args.rows, "cpus": os.cpu_count(), "idle_before": idle,
                              "runs": []}
    with psycopg.connect(url, autocommit=True) as conn:
        for i, _ in enumerate(plan):
            conn.execute(DDL.format(table=f"products_{i}"))
    for i, (way, file, rows) in enumerate(plan):
        if way in skip:
            continue
        figures = run_child(way.replace("-", ""), file, url, f"products_{i}", rows)
        rate = figures["rows"] / figures["seconds"]
        note = ""
        if way == "naive":
            note = f"  (on {figures['rows']} rows; {args.rows} extrapolated: " \
                   f"{args.rows / rate:.0f} s)"
        print(f"{way:9} {figures['rows']:>7} rows {figures['seconds']:7.2f} s "
              f"{rate:>9,.0f} rows/s  (this process's CPU {figures['cpu_seconds']:6.2f} s: "
              f"{figures['rows'] / figures['cpu_seconds']:>8,.0f} rows per CPU-s)\n"
              f"{'':10}peak RSS {figures['peak_rss_mb']:6.1f} MB "
              f"(at start {figures['rss_at_start_mb']:.1f})  load {figures['load_before']:.2f}"
              f"->{figures['load_after']:.2f}{note}")
        if "timings" in figures:
            print(f"          phases (s): {figures['timings']}")
        report["runs"].append({"way": way, **figures, "rows_per_second": rate})
    return report


if __name__ == "__main__":
    main()
