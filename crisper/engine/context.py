"""The job context handed to a job function: progress, cancellation checks, and a kept logger.

Nothing here touches the database: the process's lease keeper stores progress and log lines
and brings back cancel requests on its beat, so a job never blocks on a database outage.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from crisper.errors import Cancelled

JOB_LOGGER = "crisper.jobs"
# A worker that could not renew a lease for this share of its length stops the job itself, so
# that it is gone before the lifeline (which waits for the whole lease) can start another attempt.
SELF_FENCE_FRACTION = 0.8


class LogBuffer:
    """Log lines waiting to be stored, with a cap on how many one attempt may keep."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept = 0
        self.dropped = 0
        self._lines: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, line: dict[str, Any]) -> bool:
        with self._lock:
            if self.kept >= self.limit:
                self.dropped += 1
                return False
            self.kept += 1
            self._lines.append(line)
            return True

    @property
    def pending(self) -> bool:
        return bool(self._lines)

    def take(self) -> list[dict[str, Any]]:
        with self._lock:
            lines, self._lines = self._lines, []
            return lines


class JobContext:
    """What a running job can see and do. Passed as the job function's first argument."""

    def __init__(
        self, *, job_id: uuid.UUID, job_type: str, attempt: int, max_attempts: int,
        lease_token: uuid.UUID, lease_seconds: float, max_log_lines: int,
        on_progress: Callable[[JobContext], None] | None = None,
        on_log: Callable[[JobContext, dict[str, Any]], None] | None = None,
        on_still_running: Callable[[JobContext], None] | None = None,
    ) -> None:
        self.job_id = job_id
        self.job_type = job_type
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.lease_token = lease_token
        self.logger = logging.LoggerAdapter(
            logging.getLogger(f"{JOB_LOGGER}.{job_type}"), {"crisper_ctx": self}
        )
        self.progress_current: float | None = None
        self.progress_total: float | None = None
        self.progress_message: str | None = None
        self.progress_dirty = False
        # A workflow node's received results, by parent node name (see crisper/workflows.py).
        self.parents: dict[str, Any] = {}
        # Params a delivering node gets from its parents when it runs (Workflow.add deliver=).
        self.inputs: dict[str, Any] = {}
        self.logs = LogBuffer(max_log_lines)
        self.cancel_requested = False
        self.lease_lost = False  # unrenewed too long here, or taken away (below)
        self.lease_revoked = False  # the database says the lease is gone: write nothing
        self._lease_seconds = lease_seconds
        self._on_progress = on_progress
        self._on_log = on_log
        self._on_still_running = on_still_running
        self.lease_renewed(time.monotonic())

    def __repr__(self) -> str:
        return f"<JobContext {self.job_type} {self.job_id} attempt {self.attempt}>"

    def progress(self, current: float, total: float | None = None, message: str | None = None
                 ) -> None:
        """Report progress: published live at once, stored on the next lease beat."""
        self.progress_current, self.progress_total = current, total
        if message is not None:
            self.progress_message = message
        self.progress_dirty = True
        if self._on_progress is not None:
            self._on_progress(self)

    def check_cancelled(self) -> None:
        """Raise Cancelled if someone asked this job to stop, or its lease cannot be kept."""
        if time.monotonic() > self.lease_deadline:
            self.lease_lost = True  # unrenewed too long: the lifeline may hand the job on
        if self.cancel_requested or self.lease_lost:
            raise Cancelled(f"job {self.job_id} was cancelled")

    @property
    def is_cancelled(self) -> bool:
        return self.cancel_requested or self.lease_lost

    def lease_renewed(self, asked_at: float) -> None:
        """The database extended the lease at some moment after `asked_at` (monotonic)."""
        self.lease_deadline = asked_at + self._lease_seconds * SELF_FENCE_FRACTION

    def announce_running(self) -> None:
        """Say once, live, that the job runs: from the lease beat, so a job that ends before
        its first beat costs no message (its final state message covers it)."""
        if self._on_still_running is not None:
            callback, self._on_still_running = self._on_still_running, None
            callback(self)

    def has_news(self) -> bool:
        """Whether progress, log lines or a count of dropped lines still wait to be stored."""
        return self.progress_dirty or self.logs.pending or self.logs.dropped > 0

    def take_progress(self) -> tuple[float, float | None, str | None] | None:
        """The progress to store, if it changed since last taken."""
        if not self.progress_dirty or self.progress_current is None:
            return None
        self.progress_dirty = False
        return self.progress_current, self.progress_total, self.progress_message

    def _keep_log(self, record: logging.LogRecord) -> None:
        line = {
            "job_id": self.job_id, "at": datetime.fromtimestamp(record.created, UTC),
            "attempt": self.attempt, "level": record.levelname,
            "message": record.getMessage()[:10_000],
        }
        if self.logs.add(line) and self._on_log is not None:
            self._on_log(self, line)


class JobLogHandler(logging.Handler):
    """Routes records logged through a JobContext's logger into that job's buffer."""

    def emit(self, record: logging.LogRecord) -> None:
        ctx = getattr(record, "crisper_ctx", None)
        if isinstance(ctx, JobContext):
            ctx._keep_log(record)


def install_log_handler() -> None:
    logger = logging.getLogger(JOB_LOGGER)
    if not any(isinstance(h, JobLogHandler) for h in logger.handlers):
        logger.addHandler(JobLogHandler())
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
