"""What the no-op job bodies of both apps share: one Redis push marking "the body started".

Both bodies pay the same single Redis round trip, so the comparison stays fair. The worker
also announces readiness through Redis, and can (opt-in) count SQL round trips per task or
profile its pool children, for the round-trip report and hotspot hunting.
"""

from __future__ import annotations

import cProfile
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import redis
from celery import signals

_client: redis.Redis | None = None
_client_pid = 0


def signal_client() -> redis.Redis:
    """A Redis client of this process's own (pool children must not share the parent's)."""
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        _client = redis.Redis.from_url(os.environ["BENCH_SIGNAL_URL"])
        _client_pid = os.getpid()
    return _client


def mark_started() -> None:
    """The no-op body: record when it began, in the list the benchmark reads."""
    global _bodies
    if _timeline:
        mark("body")
    _bodies += 1
    if _counting:  # one Celery task (a Crisper wake-up) may run many bodies
        _counts["jobs"] += 1
    signal_client().rpush(os.environ["BENCH_SIGNAL_KEY"], repr(time.time()))


def _announce_ready(**_: Any) -> None:
    key = os.environ.get("BENCH_READY_KEY")
    if key:
        signal_client().set(key, str(os.getpid()), ex=3600)


def install() -> None:
    """Hook the worker signals the benchmark relies on (idempotent)."""
    signals.worker_ready.connect(_announce_ready, weak=False, dispatch_uid="bench-ready")
    if os.environ.get("BENCH_COUNT_KEY"):
        _install_counting()
    if os.environ.get("BENCH_PROFILE_DIR"):
        _install_profiling()
    if os.environ.get("BENCH_TIMELINE_KEY"):
        _install_timeline()


# -- counting round trips per task (opt-in: BENCH_COUNT_KEY) ---------------------------------

_counts: Counter[str] = Counter()
_counting = False
_bodies = 0  # bodies run by this process


def _install_counting() -> None:
    global _counting
    _counting = True
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    def on_statement(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        _counts["sql"] += 1
        _counts["sql: " + " ".join(statement.split())[:48]] += 1

    event.listen(Engine, "before_cursor_execute", on_statement)
    # psycopg sends BEGIN in a round trip of its own before a transaction's first statement.
    event.listen(Engine, "begin", lambda _c: _counts.update(["sql", "sql: BEGIN"]))
    event.listen(Engine, "commit", lambda _c: _counts.update(["sql", "sql: COMMIT"]))
    event.listen(Engine, "rollback", lambda _c: _counts.update(["sql", "sql: ROLLBACK"]))
    # pool_pre_ping runs a ping on checkout from a pinging pool, outside the cursor events.
    from sqlalchemy.engine.default import DefaultDialect

    pinged = DefaultDialect._do_ping_w_event

    def counted_ping(self: DefaultDialect, dbapi_connection: Any) -> bool:
        _counts.update(["sql", "sql: (pre-ping)"])
        return pinged(self, dbapi_connection)

    DefaultDialect._do_ping_w_event = counted_ping  # type: ignore[method-assign]
    event.listen(Pool, "checkout", lambda *_: _counts.update(["pool checkouts"]))

    original = redis.Redis.execute_command

    def counted(self: redis.Redis, *args: Any, **options: Any) -> Any:
        if not getattr(self, "_bench_uncounted", False):
            _counts["redis"] += 1
            _counts[f"redis: {args[0]}"] += 1
        return original(self, *args, **options)

    redis.Redis.execute_command = counted  # type: ignore[method-assign]

    def reset(**_: Any) -> None:
        _counts.clear()

    def report(**_: Any) -> None:
        client = redis.Redis.from_url(os.environ["BENCH_SIGNAL_URL"])
        client._bench_uncounted = True  # type: ignore[attr-defined]
        client.rpush(os.environ["BENCH_COUNT_KEY"], json.dumps(dict(_counts)))
        client.close()

    signals.task_prerun.connect(reset, weak=False, dispatch_uid="bench-count-reset")
    signals.task_postrun.connect(report, weak=False, dispatch_uid="bench-count-report")


# -- profiling pool children (opt-in: BENCH_PROFILE_DIR; BENCH_PROFILE_CLOCK=cpu|wall) -------

_profiler: cProfile.Profile | None = None
_dumped_at = 0  # bodies run when the profile was last written


def _install_profiling() -> None:
    def start(**_: Any) -> None:
        global _profiler
        if _profiler is None:
            cpu = os.environ.get("BENCH_PROFILE_CLOCK") == "cpu"
            _profiler = cProfile.Profile(time.process_time) if cpu else cProfile.Profile()
        _profiler.enable()

    def stop(**_: Any) -> None:
        global _dumped_at
        if _profiler is None:
            return
        _profiler.disable()
        if _bodies - _dumped_at >= 100:
            _dumped_at = _bodies
            path = os.path.join(os.environ["BENCH_PROFILE_DIR"], f"child-{os.getpid()}.prof")
            _profiler.dump_stats(path + ".part")
            os.replace(path + ".part", path)  # a child stopped mid-write leaves the last one

    signals.task_prerun.connect(start, weak=False, dispatch_uid="bench-profile-start")
    signals.task_postrun.connect(stop, weak=False, dispatch_uid="bench-profile-stop")


# -- a pickup's timeline (opt-in: BENCH_TIMELINE_KEY) ------------------------------------------

_timeline = False
marks: list[tuple[str, float]] = []  # this task's (stage, epoch seconds), in order


def mark(stage: str) -> None:
    marks.append((stage, time.time()))


def timed(stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """`function`, marking "<stage> start" and "<stage> end" around each call."""
    def marked(*args: Any, **kwargs: Any) -> Any:
        mark(f"{stage} start")
        try:
            return function(*args, **kwargs)
        finally:
            mark(f"{stage} end")
    return marked


def _install_timeline() -> None:
    """Timestamps of a wake-up's way through the worker: its receipt by the main process
    (sent to Redis by a thread of its own, off the path), then in the pool child the wake-up
    marker's delete, the claim and the body's start; one JSON list per task, at its end."""
    global _timeline
    import queue
    import threading

    from crisper.engine import wakes
    from crisper.store import attempts

    _timeline = True
    key = os.environ["BENCH_TIMELINE_KEY"]
    received: queue.SimpleQueue[float] = queue.SimpleQueue()
    sender: list[threading.Thread] = []

    def send_receipts() -> None:
        client = redis.Redis.from_url(os.environ["BENCH_SIGNAL_URL"])
        while True:
            client.rpush(f"{key}:received", repr(received.get()))

    def on_received(**_: Any) -> None:
        received.put(time.time())
        if not sender:
            sender.append(threading.Thread(target=send_receipts, daemon=True))
            sender[0].start()

    def on_prerun(**_: Any) -> None:
        marks.clear()
        mark("pool child")

    def on_postrun(**_: Any) -> None:
        signal_client().rpush(key, json.dumps(marks))

    wakes.Wakes.taken = timed("marker delete", wakes.Wakes.taken)  # type: ignore[method-assign]
    attempts.claim_next = timed("claim", attempts.claim_next)
    signals.task_received.connect(on_received, weak=False, dispatch_uid="bench-tl-received")
    signals.task_prerun.connect(on_prerun, weak=False, dispatch_uid="bench-tl-prerun")
    signals.task_postrun.connect(on_postrun, weak=False, dispatch_uid="bench-tl-postrun")
