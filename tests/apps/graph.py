"""A test app for workflows: nodes that square a number, fail on demand, sleep, and join.

Each body marks its start in the probe files (tests/apps/probe.py), so tests count how many
times every node really ran, from outside the database.
"""

from __future__ import annotations

import time
from typing import Any

from crisper import Crisper, JobContext, Retry, Settings
from tests.apps import probe


def build(settings: Settings | None = None) -> Crisper:
    app = Crisper("graph", settings=settings)
    app.job(name="graph.square", retry=Retry(attempts=1))(square)
    app.job(name="graph.join", retry=Retry(attempts=1))(join)
    app.job(name="graph.nap", retry=Retry(attempts=1))(nap)
    app.job(name="graph.deaf", retry=Retry(attempts=1))(deaf)
    return app


def square(ctx: JobContext, n: int, fail: bool = False, seconds: float = 0.0) -> int:
    probe.mark(ctx, "start")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ctx.check_cancelled()
        time.sleep(0.05)
    if fail:
        raise ValueError(f"node {n} fails on purpose")
    return n * n


def join(ctx: JobContext, seconds: float = 0.0) -> dict[str, Any]:
    """A fan-in: what it received, by parent node name."""
    probe.mark(ctx, "start")
    time.sleep(seconds)
    values = [v for v in ctx.parents.values() if isinstance(v, int)]
    return {"parents": sorted(ctx.parents), "count": len(ctx.parents), "sum": sum(values)}


def nap(ctx: JobContext, seconds: float = 30.0) -> str:
    """Sleeps, checking for cancellation."""
    probe.mark(ctx, "start")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ctx.check_cancelled()
        time.sleep(0.05)
    return "rested"


def deaf(ctx: JobContext, seconds: float = 60.0) -> str:
    """Sleeps without ever checking for cancellation: only a forced stop ends it early."""
    probe.mark(ctx, "start")
    time.sleep(seconds)
    probe.mark(ctx, "end")
    return "woke"


crisper = build()
