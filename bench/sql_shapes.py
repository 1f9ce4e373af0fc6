"""What one job's claim and outcome cost the worker, shape by shape of the SQL sent.

Run from the repository root:  .venv/bin/python -m bench.sql_shapes [--jobs 1000]

One client claims and finishes queued jobs one at a time, the way a pool child does,
with (a) Crisper's store functions as they are, (b) the same without pool_pre_ping,
(c) one statement per step (UPDATE ... RETURNING and the event INSERT in one CTE) in
autocommit, on psycopg directly and (c') through SQLAlchemy text(), (d) as (c) with
synchronous_commit off, to show what the two fsyncs cost.
Wall and client-CPU milliseconds per job are printed; no worker, no broker traffic.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

import psycopg
from sqlalchemy import create_engine, text
from sqlalchemy.orm import sessionmaker

from bench.systems import CrisperSystem
from bench.throughput import crisper_world, world_options
from crisper.states import JobState
from crisper.store import attempts as attempt_sql
from crisper.store import utcnow
from crisper.store.db import normalize_url

CLAIM = """
WITH claimed AS (
  UPDATE crisper_jobs SET state = 'running', attempt = attempt + 1, lease_token = %(token)s,
    lease_expires_at = %(until)s, worker = %(worker)s, task_id = %(task)s, started_at = %(at)s,
    cancel_requested_at = NULL
  WHERE id = ANY(%(ids)s) AND state = 'queued'
  RETURNING id, type, params, attempt, max_attempts, retry_policy, timeout
), logged AS (
  INSERT INTO crisper_job_events (job_id, at, from_state, to_state, reason, attempt, worker)
  SELECT id, %(at)s, 'queued', 'running', 'claimed', attempt, %(worker)s FROM claimed
)
SELECT * FROM claimed
"""
FINISH = """
WITH done AS (
  UPDATE crisper_jobs SET state = 'succeeded', lease_token = NULL, lease_expires_at = NULL,
    finished_at = %(at)s, result = 'null'::jsonb, error = NULL
  WHERE id = %(id)s AND lease_token = %(token)s AND state = 'running'
  RETURNING id, attempt
)
INSERT INTO crisper_job_events (job_id, at, from_state, to_state, reason, attempt, worker)
SELECT id, %(at)s, 'running', 'succeeded', 'succeeded', attempt, %(worker)s FROM done
"""
WORKER = "bench@sql-shapes:1"


def as_is(system: CrisperSystem, pre_ping: bool) -> Callable[[uuid.UUID], None]:
    engine = create_engine(normalize_url(system.world.database_url), pool_pre_ping=pre_ping)
    sessions = sessionmaker(engine, expire_on_commit=False)

    def one(job_id: uuid.UUID) -> None:
        with sessions() as s, s.begin():
            claimed = attempt_sql.claim(s, [job_id], WORKER, "task", 30.0, utcnow())
        with sessions() as s, s.begin():
            c = claimed[0]
            attempt_sql.finish(s, c.id, c.lease_token, JobState.SUCCEEDED, utcnow(),
                               reason="succeeded", worker=WORKER, result=None)
    return one


def one_statement(system: CrisperSystem, sync_commit: bool) -> Callable[[uuid.UUID], None]:
    conn = psycopg.connect(system.world.database_url, autocommit=True)
    if not sync_commit:
        conn.execute("SET synchronous_commit = off")

    def one(job_id: uuid.UUID) -> None:
        at = utcnow()
        token = uuid.uuid4()
        row = conn.execute(CLAIM, {"token": token, "until": at + timedelta(seconds=30),
                                   "worker": WORKER, "task": "task", "at": at,
                                   "ids": [job_id]}).fetchone()
        assert row is not None
        conn.execute(FINISH, {"at": utcnow(), "id": job_id, "token": token, "worker": WORKER})
    return one


def one_statement_sqlalchemy(system: CrisperSystem) -> Callable[[uuid.UUID], None]:
    """Shape (c) through SQLAlchemy text() on an autocommit connection: the ORM-free cost."""
    engine = create_engine(normalize_url(system.world.database_url), isolation_level="AUTOCOMMIT")
    conn = engine.connect()
    claim, finish = (text(re.sub(r"%\((\w+)\)s", r":\1", q)) for q in (CLAIM, FINISH))

    def one(job_id: uuid.UUID) -> None:
        at = utcnow()
        token = uuid.uuid4()
        row = conn.execute(claim, {"token": token, "until": at + timedelta(seconds=30),
                                   "worker": WORKER, "task": "task", "at": at,
                                   "ids": [job_id]}).first()
        assert row is not None
        conn.execute(finish, {"at": utcnow(), "id": job_id, "token": token, "worker": WORKER})
    return one


def measure(system: CrisperSystem, jobs: int, one: Callable[[uuid.UUID], None]) -> tuple[float,
                                                                                         float]:
    records = system.app.submit_many([_request()] * jobs)
    ids = [r.id for r in records]
    one(ids[0])  # connect outside the clock
    cpu0, t0 = time.process_time(), time.perf_counter()
    for job_id in ids[1:]:
        one(job_id)
    n = len(ids) - 1
    return (time.perf_counter() - t0) * 1000 / n, (time.process_time() - cpu0) * 1000 / n


def _request():  # type: ignore[no-untyped-def]
    from bench.apps.crisper_noop import JOB
    from crisper import SubmitRequest

    return SubmitRequest(type=JOB)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sql_shapes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=3, help="rounds; medians reported")
    world_options(p)
    args = p.parse_args(argv)
    with crisper_world(args) as (system, _):
        report(system, args.jobs, args.repeat)
    return 0


def report(system: CrisperSystem, jobs: int, repeat: int) -> None:
    shapes = [
        ("(a) as is: 2 transactions, pre-ping, BEGIN, UPDATE, INSERT, COMMIT",
         lambda: as_is(system, pre_ping=True)),
        ("(b) as is without pool_pre_ping", lambda: as_is(system, pre_ping=False)),
        ("(c) one CTE statement per step, autocommit (psycopg)",
         lambda: one_statement(system, True)),
        ("(c') as (c) through SQLAlchemy text() on a Connection",
         lambda: one_statement_sqlalchemy(system)),
        ("(d) as (c), synchronous_commit off", lambda: one_statement(system, False)),
    ]
    results: dict[str, list[tuple[float, float]]] = {title: [] for title, _ in shapes}
    for _ in range(repeat):  # interleaved, so that a burst of outside load hits every shape
        for title, make in shapes:
            results[title].append(measure(system, jobs, make()))
    print(f"claim + finish of {jobs} jobs, one at a time, one client; "
          f"ms per job, median of {repeat}:")
    for title, figures in results.items():
        wall = statistics.median(w for w, _ in figures)
        cpu = statistics.median(c for _, c in figures)
        print(f"  {wall:6.2f} wall  {cpu:6.2f} client CPU   {title}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
