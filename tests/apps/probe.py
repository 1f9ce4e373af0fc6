"""A test job app: job types that record each attempt's start and end in probe files.

The probe marks are how tests check invariants from outside: "no two attempts of one job
ran at the same time", "this job never ran", "it ran exactly once". They go to files, not
the database, so that a test which cuts the database still sees true timings.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import NamedTuple

from crisper import Crisper, JobContext, Retry, Settings


class ProbeRow(NamedTuple):
    job_id: str
    attempt: int
    pid: int
    event: str
    at: float


def mark(ctx: JobContext, event: str) -> None:
    """Record that the body reached `event` now, in a file of this process's own."""
    line = json.dumps([str(ctx.job_id), ctx.attempt, os.getpid(), event, time.time()])
    folder = Path(os.environ.get("PROBE_DIR", "."))
    with (folder / f"probe-{os.getpid()}.jsonl").open("a") as f:
        f.write(line + "\n")


def read_marks(folder: Path) -> list[ProbeRow]:
    rows = [ProbeRow(*json.loads(line)) for path in folder.glob("probe-*.jsonl")
            for line in path.read_text().splitlines() if line]
    return sorted(rows, key=lambda r: r.at)


def build(settings: Settings | None = None) -> Crisper:
    """The probe app; workers build it from the environment, tests from their own settings."""
    app = Crisper("probe", settings=settings)
    for name, func, options in JOB_TYPES:
        app.job(name=name, **options)(func)
    return app


def sleep(ctx: JobContext, seconds: float = 0.0, check: bool = True) -> dict[str, int]:
    """Sleep, checking for cancellation every 0.1 s unless told not to."""
    mark(ctx, "start")
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if check:
                ctx.check_cancelled()
            time.sleep(0.1 if check else max(0.0, deadline - time.monotonic()))
    finally:
        mark(ctx, "end")
    return {"attempt": ctx.attempt, "pid": os.getpid()}


def noop(ctx: JobContext) -> None:
    """Nothing at all."""


def echo(ctx: JobContext, number: int, text: str = "") -> dict[str, object]:
    ctx.logger.info("echo %s %s", number, text)
    return {"number": number, "text": text}


def flaky(ctx: JobContext, fail_times: int = 1) -> int:
    if ctx.attempt <= fail_times:
        raise RuntimeError(f"attempt {ctx.attempt} fails")
    return ctx.attempt


def fatal(ctx: JobContext) -> None:
    raise KeyError("never retried")


def slow(ctx: JobContext, seconds: float = 5.0) -> None:
    """Outlives its 1 s timeout."""
    time.sleep(seconds)


def chatty(ctx: JobContext, lines: int = 10, steps: int = 0) -> None:
    for i in range(lines):
        ctx.logger.info("line %d", i)
    for i in range(steps):
        ctx.progress(i + 1, steps, f"step {i + 1}")


def steps(ctx: JobContext, steps: int = 8, seconds: float = 0.5) -> dict[str, int]:
    """Report progress step by step, checking for cancellation, over steps * seconds."""
    for i in range(steps):
        ctx.check_cancelled()
        time.sleep(seconds)
        ctx.logger.info("step %d of %d done", i + 1, steps)
        ctx.progress(i + 1, steps, f"step {i + 1} of {steps}")
    return {"steps": steps}


def explode(ctx: JobContext, message: str = "boom") -> None:
    """Fail at once with `message` (never retried)."""
    raise ValueError(message)


JOB_TYPES = [
    ("probe.batched", sleep, dict()),
    ("probe.sleep", sleep, dict(retry=Retry(attempts=5, backoff=0.2, jitter=False))),
    ("probe.noop", noop, dict()),
    ("probe.echo", echo, dict()),
    ("probe.flaky", flaky, dict(retry=Retry(attempts=3, backoff=0.2, jitter=False))),
    ("probe.fatal", fatal, dict(retry=Retry(attempts=3, backoff=0.2, dont_retry_on=(KeyError,)))),
    ("probe.slow", slow, dict(timeout=1.0, retry=Retry(attempts=1))),
    ("probe.chatty", chatty, dict()),
    ("probe.steps", steps, dict()),
    ("probe.explode", explode, dict(retry=Retry(attempts=1))),
    # Written as most users write a job type: no retry option at all.
    ("probe.plain", sleep, dict()),
]

crisper = build()
