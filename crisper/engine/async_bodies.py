"""Running `async def` job bodies: one event loop per worker process, in its main thread.

Why one loop per process, kept across jobs, in the main thread:
- a loop cannot cross fork, so each prefork pool child makes its own on first use;
- keeping it for the child's life lets loop-bound clients a job module caches (an
  httpx.AsyncClient, a database pool) serve the next job too; `asyncio.run` per job would
  close them under the caller's feet;
- Celery's soft time limit is a signal handled in the main thread: running the loop there is
  what lets SoftTimeLimitExceeded reach the coroutine.
A pool child runs one job at a time, so an async job gets the child to itself: its own
`asyncio.gather` fan-out runs concurrently, but two async jobs never share one loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import threading
from collections.abc import Coroutine
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from crisper.engine.context import JobContext
from crisper.errors import Cancelled

CANCEL_POLL_SECONDS = 0.1  # how often a running coroutine's cancel flag is looked at
SETTLE_SECONDS = 5.0  # how long a cancelled coroutine may take to unwind its finally blocks

_loops = threading.local()


def finish_body(value: Any, ctx: JobContext) -> Any:
    """The job function's return value, awaited first if the function was `async def`."""
    if inspect.iscoroutine(value):
        return run_coroutine(value, ctx)
    return value


def process_loop() -> asyncio.AbstractEventLoop:
    """This process's (and thread's) loop, made after a fork rather than inherited."""
    loop: asyncio.AbstractEventLoop | None = getattr(_loops, "loop", None)
    if loop is None or loop.is_closed() or getattr(_loops, "pid", None) != os.getpid():
        loop = asyncio.new_event_loop()
        _loops.loop, _loops.pid = loop, os.getpid()
    return loop


def run_coroutine(coro: Coroutine[Any, Any, Any], ctx: JobContext) -> Any:
    """Run one job coroutine to its end; a cancel request or a soft time limit cancels it
    at its next await, and comes out as Cancelled or SoftTimeLimitExceeded like a sync body's."""
    loop = process_loop()
    task = loop.create_task(coro)
    timed_out: list[SoftTimeLimitExceeded] = []
    watch = loop.create_task(_watch(ctx, task, timed_out))
    try:
        return loop.run_until_complete(task)
    except SoftTimeLimitExceeded:
        if task.done():
            raise  # raised inside the coroutine's own code: it already ended with it
        task.cancel("soft time limit")  # the signal struck while the loop was waiting
        _settle(loop, task)
        raise
    except asyncio.CancelledError:
        if timed_out:
            raise timed_out[0] from None
        if ctx.is_cancelled:
            raise Cancelled(f"job {ctx.job_id} was cancelled") from None
        raise
    finally:
        watch.cancel()
        _settle(loop, watch)


async def _watch(ctx: JobContext, task: asyncio.Task[Any],
                 timed_out: list[SoftTimeLimitExceeded]) -> None:
    """Cancel the job's task once the lease keeper brings a cancel request (or lost lease).

    The soft time limit's signal may also strike while this watcher runs: it is passed on.
    """
    try:
        while not task.done():
            if ctx.is_cancelled:
                task.cancel("cancel requested")
                return
            await asyncio.sleep(CANCEL_POLL_SECONDS)
    except SoftTimeLimitExceeded as exc:
        timed_out.append(exc)
        task.cancel("soft time limit")


def _settle(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
    """Let a cancelled task run its cleanup, for a bounded time."""
    if task.done():
        return
    done = asyncio.ensure_future(asyncio.wait([task], timeout=SETTLE_SECONDS), loop=loop)
    with contextlib.suppress(SoftTimeLimitExceeded, asyncio.CancelledError):
        loop.run_until_complete(done)
