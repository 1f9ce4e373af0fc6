"""The fault suite's job app: bodies that record what they really did, run by run.

Every execution of a body (a "run") writes a start mark, a tick about every 0.2 s, and an end
mark if it ran to the end (a stop mark if it raised). The marks go to files, one per process,
so that a test which cuts the database or the broker still sees what bodies did; the fault
suite counts duplicates and overlaps from them, not from Crisper's own records.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from pathlib import Path
from typing import NamedTuple

from crisper import Crisper, JobContext, Retry, Settings

TICK = 0.2


class Mark(NamedTuple):
    job_id: str
    run: str  # one id per execution of a body
    body: str  # which function ran
    attempt: int
    pid: int
    event: str  # start, tick, end, stop
    at: float


def _write(folder: Path, mark: Mark) -> None:
    with (folder / f"fault-{os.getpid()}.jsonl").open("a") as f:
        f.write(json.dumps(list(mark)) + "\n")


def read_marks(folder: Path) -> list[Mark]:
    """Every mark of every process, oldest first (a line cut by a kill is skipped)."""
    marks = []
    for path in folder.glob("fault-*.jsonl"):
        for line in path.read_text().splitlines():
            try:
                marks.append(Mark(*json.loads(line)))
            except (ValueError, TypeError):
                continue
    return sorted(marks, key=lambda m: m.at)


class Recorder:
    """The marks of one run of one body."""

    def __init__(self, ctx: JobContext, body: str) -> None:
        self.ctx = ctx
        self.body = body
        self.run = uuid.uuid4().hex
        self.folder = Path(os.environ.get("PROBE_DIR", "."))

    def __call__(self, event: str) -> None:
        _write(self.folder, Mark(str(self.ctx.job_id), self.run, self.body, self.ctx.attempt,
                                 os.getpid(), event, time.time()))


def work(ctx: JobContext, seconds: float = 0.5, check: bool = True,
         first_run_seconds: float | None = None) -> dict[str, int]:
    """Work `seconds` in steps of TICK; check for cancellation before each step unless told not.

    `first_run_seconds`: the job's first run takes this long instead (a long job to interrupt;
    later runs are short).
    """
    mark = Recorder(ctx, "work")
    if first_run_seconds is not None and not _ran_before(mark):
        seconds = first_run_seconds
    mark("start")
    try:
        for _ in range(max(1, math.ceil(seconds / TICK))):  # steps of work, not a deadline
            if check:
                ctx.check_cancelled()
            time.sleep(TICK)
            mark("tick")
    except BaseException:
        mark("stop")
        raise
    mark("end")
    return {"attempt": ctx.attempt, "pid": os.getpid()}


def _ran_before(mark: Recorder) -> bool:
    return any(m.job_id == str(mark.ctx.job_id) for m in read_marks(mark.folder))


def other(ctx: JobContext, seconds: float = 0.1) -> None:
    """Another type's body: a message naming it must never run it on a job of another type."""
    mark = Recorder(ctx, "other")
    mark("start")
    time.sleep(seconds)
    mark("end")


JOB_TYPES = [
    ("fault.once", work, dict()),  # no retry option, as most users write a job type
    ("fault.retry", work, dict(retry=Retry(attempts=3, backoff=0.2, jitter=False))),
    ("fault.other", other, dict()),
]


def build(settings: Settings | None = None) -> Crisper:
    app = Crisper("faultprobe", settings=settings)
    for name, func, options in JOB_TYPES:
        app.job(name=name, **options)(func)
    return app


crisper = build()
