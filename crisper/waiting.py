"""Waiting for a job to end: one back-off and one timeout rule for every wait.

JobHandle.wait, Client.wait, AsyncClient.wait and the CLI's --wait all read the job again
after a pause that grows by FACTOR up to CAP, and give up at their timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from crisper.states import JobState

FACTOR = 1.5
CAP = 1.0  # seconds: a job that ends is seen at most this late


class HasState(Protocol):
    @property
    def state(self) -> JobState: ...


J = TypeVar("J", bound=HasState)


class Waiting:
    """When to read a job again while waiting for it to end, and when to give up."""

    def __init__(self, job_id: object, timeout: float | None, poll: float) -> None:
        self.job_id = job_id
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.interval = poll

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def pause_after(self, job: HasState) -> float | None:
        """None once the job has ended; else seconds to sleep (TimeoutError past the timeout)."""
        if job.state.is_terminal:
            return None
        if self.expired():
            raise TimeoutError(f"job {self.job_id} is still {job.state.value} "
                               f"after {self.timeout}s")
        pause, self.interval = self.interval, min(self.interval * FACTOR, CAP)
        return pause


def wait_for_end(read: Callable[[], J], job_id: object, timeout: float | None,
                 poll: float) -> J:
    """Read the job until it has ended; TimeoutError past `timeout`."""
    waiting = Waiting(job_id, timeout, poll)
    while (pause := waiting.pause_after(job := read())) is not None:
        time.sleep(pause)
    return job


async def await_end(read: Callable[[], Awaitable[J]], job_id: object, timeout: float | None,
                    poll: float) -> J:
    """wait_for_end for asyncio: the same pauses, slept without blocking the loop."""
    waiting = Waiting(job_id, timeout, poll)
    while (pause := waiting.pause_after(job := await read())) is not None:
        await asyncio.sleep(pause)
    return job
