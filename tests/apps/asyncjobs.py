"""A test app of `async def` job types: progress, logs, cancellation, timeout and retries."""

from __future__ import annotations

import asyncio
import os

from crisper import Crisper, JobContext, Retry, Settings
from tests.apps import probe


def build(settings: Settings | None = None) -> Crisper:
    app = Crisper("asyncjobs", settings=settings)
    app.job(name="async.steps")(steps)
    app.job(name="async.wait", retry=Retry(attempts=1))(wait)
    app.job(name="async.slow", timeout=1.0, retry=Retry(attempts=1))(slow)
    app.job(name="async.flaky", retry=Retry(attempts=3, backoff=0.2, jitter=False))(flaky)
    return app


async def steps(ctx: JobContext, steps: int = 3) -> dict[str, object]:
    """Progress and kept logs from a coroutine, with concurrent awaits inside it."""
    for i in range(steps):
        await asyncio.gather(asyncio.sleep(0.05), asyncio.sleep(0.05))
        ctx.logger.info("async step %d", i + 1)
        ctx.progress(i + 1, steps, f"step {i + 1}")
    return {"steps": steps, "pid": os.getpid()}


async def wait(ctx: JobContext, seconds: float = 60.0) -> None:
    """Awaits without ever calling check_cancelled: only cancelling the task can stop it."""
    probe.mark(ctx, "start")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        probe.mark(ctx, "task-cancelled")
        raise


async def slow(ctx: JobContext, seconds: float = 30.0) -> None:
    """Outlives its 1 s timeout while awaiting."""
    probe.mark(ctx, "start")
    try:
        await asyncio.sleep(seconds)
    finally:
        probe.mark(ctx, "end")


async def flaky(ctx: JobContext, fail_times: int = 1) -> int:
    await asyncio.sleep(0)
    if ctx.attempt <= fail_times:
        raise RuntimeError(f"attempt {ctx.attempt} fails")
    return ctx.attempt


crisper = build()
