"""Demo job types, so a first `crisper up` has real work to show: long, flaky, cancellable."""

from __future__ import annotations

import time

from crisper import Crisper, JobContext, Retry

crisper = Crisper("demo")


@crisper.job(name="demo.countdown", timeout="1h")
def countdown(ctx: JobContext, seconds: int = 30) -> dict[str, int]:
    """Count down, reporting progress every second; stops at the next second when cancelled."""
    for done in range(seconds):
        ctx.progress(done, seconds, f"{seconds - done}s to go")
        if done % 5 == 0:
            ctx.logger.info("%d seconds left", seconds - done)
        ctx.check_cancelled()
        time.sleep(1)
    ctx.progress(seconds, seconds, "done")
    return {"counted": seconds}


@crisper.job(name="demo.flaky", retry=Retry(attempts=4, backoff="2s", jitter=False))
def flaky(ctx: JobContext, fail_times: int = 2) -> dict[str, int]:
    """Fail the first `fail_times` attempts, then succeed: shows retries with back-off."""
    if ctx.attempt <= fail_times:
        ctx.logger.warning("attempt %d: failing on purpose", ctx.attempt)
        raise RuntimeError(f"attempt {ctx.attempt} failed on purpose")
    return {"succeeded_on_attempt": ctx.attempt}


@crisper.job(name="demo.stubborn", timeout="1h")
def stubborn(ctx: JobContext, seconds: int = 600) -> None:
    """Sleep without ever checking for cancellation: cancel stops it by force after the grace."""
    ctx.logger.info("sleeping %d seconds without checking", seconds)
    time.sleep(seconds)


@crisper.job(name="demo.noop")
def noop(ctx: JobContext) -> None:
    """Do nothing (for benchmarks)."""


@crisper.job(name="demo.fail", retry=Retry(attempts=1))
def fail(ctx: JobContext, message: str = "this job always fails") -> None:
    """Fail at once and for good: a job for the failed (dead-letter) list."""
    raise ValueError(message)
