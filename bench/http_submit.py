"""Submit throughput and latency over HTTP: `crisper api` with its default options, under wrk.

Run from the repository root:  .venv/bin/python -m bench.http_submit [--seconds 10 --runs 3]

It starts `crisper api` (its defaults, only the port given) on PostgreSQL + Redis in a schema
and a key prefix of its own, makes an API key, and has wrk (Debian's `wrk`, a C load
generator driven by a small Lua script, so that the client costs little CPU) POST /v1/jobs
from 32 keep-alive connections for a fixed time: first with no worker (jobs pile up queued),
then with a worker (prefork, 2) draining them. Each mode runs `--runs` times; the medians are
printed last, with the load average before each run (the machine is shared: it is noisy).
After each run the rows in the table are counted: every 2xx answer must be a committed row.

Then the yardstick the issue's targets were set against, in the same run and the same way:
a minimal FastAPI POST that inserts one row (bench/apps/minimal_insert.py), served by uvicorn
in one process with no access log. Crisper's figures are printed as a ratio to it too, since
machines differ more than the targets' margins (`--no-reference` skips it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import redis
from sqlalchemy import create_engine, text

from bench.throughput import Load
from crisper import Crisper, Settings
from crisper.embedded import free_port
from crisper.keys import KeyService
from crisper.store.db import normalize_url

ROOT = Path(__file__).resolve().parent.parent
PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/2"
APP = "crisper.contrib.demo"
JOB = {"type": "demo.countdown", "params": {"seconds": 0}}
REFERENCE = "minimal insert"  # the yardstick's mode (bench/apps/minimal_insert.py)
# wrk's script: one POST per request; done() prints the figures as one JSON line.
LUA = """
wrk.method = "POST"
wrk.body = '%(body)s'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(secret)s"
done = function(summary, latency, requests)
  io.write(string.format(
    '{"requests": %%d, "duration_us": %%d, "non_2xx": %%d, "socket_errors": %%d, '
    .. '"p50_us": %%d, "p99_us": %%d, "max_us": %%d}\\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


@contextmanager
def world() -> Iterator[dict[str, str]]:
    """A PostgreSQL schema and a Redis key prefix private to this run, removed afterwards."""
    token = uuid.uuid4().hex[:10]
    schema, prefix = f"bench_http_{token}", f"bh{token}:"
    admin = create_engine(normalize_url(PG_BASE))
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    env = {"CRISPER_DATABASE_URL": f"{PG_BASE}?options=-csearch_path%3D{schema}",
           "CRISPER_BROKER_URL": REDIS, "CRISPER_BROKER_PREFIX": prefix, "CRISPER_APP": APP}
    try:
        yield env
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
        client = redis.Redis.from_url(REDIS)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def spawn(args: list[str], env: dict[str, str], module: str = "crisper"
          ) -> subprocess.Popen[bytes]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CRISPER_")}
    full.update(env, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", module, *args], env=full, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the API process exited")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the API did not become ready")


def run_wrk(url: str, script: Path, clients: int, seconds: float) -> dict[str, float]:
    """One wrk run (one thread: it needs far less than a core); its figures."""
    out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{seconds:g}s", "--timeout", "10s",
                          "-s", str(script), f"{url}/v1/jobs"],
                         capture_output=True, text=True, check=True, timeout=seconds + 60)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    good = figures["requests"] - figures["non_2xx"]
    return {"per_second": good / (figures["duration_us"] / 1e6),
            "p50_ms": figures["p50_us"] / 1000, "p99_ms": figures["p99_us"] / 1000,
            "max_ms": figures["max_us"] / 1000, "requests": figures["requests"],
            "errors": figures["non_2xx"] + figures["socket_errors"]}


def count_rows(crisper: Crisper, table: str = "crisper_jobs") -> int:
    with crisper.store.read() as session:
        return int(session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def durability(crisper: Crisper) -> str:
    with crisper.store.read() as session:
        values = [session.execute(text(f"SHOW {name}")).scalar_one()
                  for name in ("fsync", "synchronous_commit")]
    return f"fsync={values[0]} synchronous_commit={values[1]}"


def api_defaults() -> str:
    """The options `crisper api` runs with when given none (read from its own command)."""
    from crisper.cli import api

    defaults = getattr(api, "DEFAULTS", None)  # a checkout from before they were listed: none
    if defaults is None:
        return "workers=1, log_level=info, access log on (before DEFAULTS existed)"
    return ", ".join(f"{k}={v}" for k, v in defaults.items())


def measure(args: argparse.Namespace, crisper: Crisper, url: str, script: Path,
            env: dict[str, str]) -> dict[str, list[dict[str, float]]]:
    results: dict[str, list[dict[str, float]]] = {"no worker": [], "worker draining": []}
    for mode, rows in results.items():
        worker = None
        if mode == "worker draining":
            worker = spawn(["worker", "--concurrency", "2", "--pool", "prefork",
                            "--without-mingle", "--without-gossip"], env)
            time.sleep(5)
        try:
            rows += runs(args, mode, url, script, lambda: count_rows(crisper))
        finally:
            if worker is not None:
                stop(worker)
    return results


def runs(args: argparse.Namespace, mode: str, url: str, script: Path,
         count: Callable[[], int]) -> list[dict[str, float]]:
    """`args.runs` wrk runs against `url`, each with the load before it and the rows that
    `count` found added (every 2xx answer must be a committed row)."""
    rows = []
    for run in range(1, args.runs + 1):
        machine = Load.now()
        load, idle, speed = machine.loadavg_1m, machine.idle_percent / 100, machine.cpu_speed_ms
        before = count()
        r = run_wrk(url, script, args.clients, args.seconds)
        time.sleep(0.5)  # answers in flight when wrk stopped are committed too
        r["rows"] = count() - before
        r["load"], r["idle"], r["cpu_speed_ms"] = load, idle, speed
        rows.append(r)
        print(f"{mode:16} run {run}  load {load:4.2f} idle {idle:4.0%} cpu task {speed:4.1f} ms  "
              f"{r['per_second']:7.1f} submits/s  p50 {r['p50_ms']:6.1f} ms  "
              f"p99 {r['p99_ms']:6.1f} ms  max {r['max_ms']:6.1f} ms  "
              f"errors {r['errors']:.0f}  rows {r['rows']:.0f}/{r['requests']:.0f} "
              "answered", flush=True)
    return rows


def measure_reference(args: argparse.Namespace, crisper: Crisper, script: Path,
                      database_url: str) -> list[dict[str, float]]:
    """The minimal FastAPI insert (bench/apps/minimal_insert.py) under the same load."""
    from bench.apps.minimal_insert import metadata

    metadata.create_all(crisper.store.engine)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = spawn(["bench.apps.minimal_insert:app", "--port", str(port),
                    "--workers", "1", "--no-access-log", "--log-level", "warning"],
                   {"MINIMAL_DATABASE_URL": normalize_url(database_url)}, module="uvicorn")
    try:
        wait_ready(url, server)
        return runs(args, REFERENCE, url, script,
                    lambda: count_rows(crisper, "minimal_jobs"))
    finally:
        stop(server)


def report(args: argparse.Namespace, results: dict[str, list[dict[str, float]]],
           settings: str) -> None:
    print(f"\n{datetime.now(UTC):%Y-%m-%d} {platform.machine()} {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; {settings}")
    print(f"wrk -t1 -c{args.clients} -d{args.seconds:g}s (Lua POST script); "
          f"medians of {args.runs} runs")
    print("| mode | submits/s | p50 ms | p99 ms | load before (each run) |\n"
          "| --- | ---: | ---: | ---: | --- |")
    medians = {mode: {k: statistics.median(r[k] for r in rows)
                      for k in ("per_second", "p50_ms", "p99_ms")}
               for mode, rows in results.items()}
    for mode, rows in results.items():
        med = medians[mode]
        loads = " / ".join(f"{r['load']:.2f}" for r in rows)
        print(f"| {mode} | {med['per_second']:.0f} | {med['p50_ms']:.1f} | "
              f"{med['p99_ms']:.1f} | {loads} |")
    if REFERENCE in medians:
        yardstick = medians[REFERENCE]["per_second"]
        print("\nas a share of the minimal insert's rate: " + ", ".join(
            f"{mode} {medians[mode]['per_second'] / yardstick:.2f}x"
            for mode in medians if mode != REFERENCE))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per mode (medians)")
    parser.add_argument("--clients", type=int, default=32, help="wrk's connections")
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="skip the minimal FastAPI insert measured after crisper api")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    with world() as env, tempfile.TemporaryDirectory() as tmp:
        settings = Settings(**{k.removeprefix("CRISPER_").lower(): v for k, v in env.items()
                               if k != "CRISPER_APP"})
        crisper = Crisper("bench", settings=settings)
        crisper.store.create_all()
        secret = KeyService(crisper.store).create("bench", ["read", "write"]).secret
        script = Path(tmp) / "submit.lua"
        script.write_text(LUA % {"body": json.dumps(JOB), "secret": secret})
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        api = spawn(["api", "--port", str(port)], env)
        try:
            wait_ready(url, api)
            shown = f"crisper api defaults: {api_defaults()}; {durability(crisper)}"
            print(shown, flush=True)
            results = measure(args, crisper, url, script, env)
            stop(api)
            if args.reference:
                results[REFERENCE] = measure_reference(args, crisper, script,
                                                       env["CRISPER_DATABASE_URL"])
        finally:
            stop(api)
            crisper.store.engine.dispose()
    report(args, results, shown)


if __name__ == "__main__":
    main()
