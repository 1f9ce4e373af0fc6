"""Submit throughput and latency over HTTP at 1, 8 and 32 concurrent clients.

Run from the repository root:  .venv/bin/python -m bench.http_submit [--seconds 8]

It starts `crisper api` (one uvicorn process) on PostgreSQL + Redis in a schema and a key
prefix of its own, makes an API key, and has N threads (each with its own keep-alive
connection) POST /v1/jobs for a fixed time; first with no worker (jobs pile up queued),
then with a worker draining them. The client threads share this process and the machine
with the server: the figures are for the whole system on one box, not the server alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import redis
from sqlalchemy import create_engine, text

from crisper import Crisper, Settings
from crisper.embedded import free_port
from crisper.keys import KeyService
from crisper.store.db import normalize_url

ROOT = Path(__file__).resolve().parent.parent
PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/2"
APP = "crisper.contrib.demo"
JOB = {"type": "demo.countdown", "params": {"seconds": 0}}


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


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CRISPER_")}
    full.update(env, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "crisper", *args], env=full, cwd=ROOT,
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


def run_clients(url: str, secret: str, clients: int, seconds: float) -> dict[str, float]:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(i: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {secret}"},
                          timeout=30) as http:
            http.get("/healthz")
            start.wait()
            while time.monotonic() < deadline[0]:
                t0 = time.perf_counter()
                r = http.post("/v1/jobs", json=JOB)
                latencies[i].append(time.perf_counter() - t0)
                if r.status_code != 202:
                    errors[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    deadline[0] = time.monotonic() + seconds
    start.wait()
    began = time.monotonic()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    every = sorted(x for per in latencies for x in per)
    q = statistics.quantiles(every, n=100) if len(every) > 1 else [every[0]] * 99
    return {"submits": len(every), "per_second": len(every) / elapsed, "p50_ms": q[49] * 1000,
            "p99_ms": q[98] * 1000, "errors": sum(errors)}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--clients", default="1,8,32")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    with world() as env:
        settings = Settings(**{k.removeprefix("CRISPER_").lower(): v for k, v in env.items()
                               if k != "CRISPER_APP"})
        crisper = Crisper("bench", settings=settings)
        crisper.store.create_all()
        secret = KeyService(crisper.store).create("bench", ["read", "write"]).secret
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        api = spawn(["api", "--port", str(port), "--log-level", "warning"], env)
        worker = None
        rows = []
        try:
            wait_ready(url, api)
            for mode in ("no worker", "worker draining"):
                if mode == "worker draining":
                    worker = spawn(["worker", "--concurrency", "2", "--pool", "prefork",
                                    "--without-mingle", "--without-gossip"], env)
                    time.sleep(5)
                for clients in levels:
                    r = run_clients(url, secret, clients, args.seconds)
                    rows.append((mode, clients, r))
                    print(f"{mode:16} clients={clients:<3} {r['per_second']:7.1f} submits/s  "
                          f"p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms  "
                          f"errors {r['errors']:.0f}", flush=True)
        finally:
            if worker is not None:
                stop(worker)
            stop(api)
            crisper.store.engine.dispose()
    print(f"\n{datetime.now(UTC):%Y-%m-%d} {platform.machine()} {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, {args.seconds:g} s per point")
    print("| mode | clients | submits/s | p50 ms | p99 ms |\n| --- | --- | --- | --- | --- |")
    for mode, clients, r in rows:
        print(f"| {mode} | {clients} | {r['per_second']:.0f} | {r['p50_ms']:.1f} | "
              f"{r['p99_ms']:.1f} |")


if __name__ == "__main__":
    main()
