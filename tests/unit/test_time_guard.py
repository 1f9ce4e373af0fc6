"""A job's own time limits, enforced in its process (crisper/engine/time_guard.py)."""

from __future__ import annotations

import multiprocessing
import signal
import time
import uuid
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from crisper.engine.time_guard import Limits, TimeGuard


def _raise_soft(_signum: int, _frame: Any) -> None:
    raise SoftTimeLimitExceeded()


def test_the_soft_limit_raises_in_the_job_and_a_stopped_guard_stays_silent() -> None:
    previous = signal.signal(signal.SIGUSR1, _raise_soft)  # as billiard's pool child does
    guard = TimeGuard()
    try:
        # Given a job with a 0.1 s soft limit, when it sleeps past it, then it is interrupted
        guard.start(uuid.uuid4(), "t.slow", Limits(0.1, None))
        with pytest.raises(SoftTimeLimitExceeded):
            time.sleep(5)
        guard.stop()
        # And a job that ended before its limit is never signalled afterwards
        guard.start(uuid.uuid4(), "t.quick", Limits(0.1, None))
        guard.stop()
        time.sleep(0.3)
    finally:
        guard.stop()
        signal.signal(signal.SIGUSR1, previous)


def _sleep_under_hard_limit() -> None:
    TimeGuard().start(uuid.uuid4(), "t.stuck", Limits(None, 0.2))
    time.sleep(10)


def test_the_hard_limit_kills_the_process() -> None:
    child = multiprocessing.get_context("fork").Process(target=_sleep_under_hard_limit)
    child.start()
    try:
        child.join(timeout=8)
    finally:
        child.kill()  # a forked child must not outlive the test (it holds this process's pipes)
    assert child.exitcode == -signal.SIGKILL
