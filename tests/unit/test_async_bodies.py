"""Async job bodies without a worker: the loop per process, cancel and soft-limit delivery."""

from __future__ import annotations

import asyncio
import signal
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from crisper.engine.async_bodies import finish_body, process_loop
from crisper.engine.context import JobContext
from crisper.errors import Cancelled


def context() -> JobContext:
    return JobContext(job_id=uuid.uuid4(), job_type="t", attempt=1, max_attempts=1,
                      lease_token=uuid.uuid4(), lease_seconds=60, max_log_lines=10)


@pytest.fixture
def soft_limit_in() -> Iterator[Callable[[float], object]]:
    """Raise SoftTimeLimitExceeded from SIGUSR1 in the main thread, as Celery's pool does (not
    SIGALRM: pytest-timeout's own alarm for the test stays in place)."""
    def fire(*_: object) -> None:
        raise SoftTimeLimitExceeded()

    main, timers = threading.get_ident(), []
    previous = signal.signal(signal.SIGUSR1, fire)

    def arm(seconds: float) -> None:
        timers.append(threading.Timer(seconds, signal.pthread_kill, (main, signal.SIGUSR1)))
        timers[-1].start()

    yield arm
    for timer in timers:
        timer.cancel()
    signal.signal(signal.SIGUSR1, previous)


async def answer(ctx: JobContext) -> int:
    await asyncio.sleep(0)
    ctx.progress(1, 1)
    return 42


def test_a_coroutine_is_awaited_on_one_loop_kept_for_the_process() -> None:
    ctx = context()
    assert finish_body(answer(ctx), ctx) == 42
    first = process_loop()
    assert finish_body(answer(ctx), ctx) == 42
    assert process_loop() is first and not first.is_running()
    assert finish_body({"sync": True}, ctx) == {"sync": True}


def test_a_cancel_request_cancels_the_coroutine_at_its_next_await() -> None:
    ctx, seen = context(), []

    async def body() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    threading.Timer(0.2, lambda: setattr(ctx, "cancel_requested", True)).start()
    with pytest.raises(Cancelled):
        finish_body(body(), ctx)
    assert seen == ["cancelled"]


def test_a_soft_time_limit_striking_while_the_loop_waits_reaches_the_coroutine(
        soft_limit_in: Callable[[float], object]) -> None:
    ctx, seen = context(), []

    async def body() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            seen.append("cleaned up")

    soft_limit_in(0.3)
    with pytest.raises(SoftTimeLimitExceeded):
        finish_body(body(), ctx)
    assert seen == ["cleaned up"]


def test_a_soft_time_limit_striking_in_the_coroutines_code_ends_it(
        soft_limit_in: Callable[[float], object]) -> None:
    ctx = context()

    async def body() -> None:
        while True:  # busy in its own code, between awaits
            sum(range(10_000))
            await asyncio.sleep(0)

    soft_limit_in(0.3)
    with pytest.raises(SoftTimeLimitExceeded):
        finish_body(body(), ctx)
