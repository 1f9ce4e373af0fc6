"""Wake-ups sent on a thread of their own, right after the submits whose jobs they wake.

A submit promises a committed job; its wake-up (a marker check in Redis and, when none is
outstanding, a message) only has to come after that commit. Sent from here, it no longer
holds up the caller: a loop of submits overlaps its next insert with the previous wake-up,
and a burst shares one marker check per queue and job type (while a wake-up is
outstanding, the thread first lets a loop's submits gather for a moment: engine/wakes.py).
A process that dies with wake-ups unsent leaves queued jobs whose message never went out;
the relay re-sends those (`redispatch_after_seconds`), as it does for any lost message.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
EXIT_FLUSH_SECONDS = 5.0
# An idle thread ends (and lets its service be collected); the next wake starts another.
IDLE_SECONDS = 2.0
_LIVE: weakref.WeakSet[Waker[object]] = weakref.WeakSet()


class Waker(Generic[T]):
    """Hands committed jobs to `send` on a daemon thread, running while there is work."""

    def __init__(self, send: Callable[[list[T]], None], name: str = "crisper-waker",
                 inline: Callable[[], bool] = lambda: False,
                 gather: Callable[[], float] = lambda: 0.0,
                 herald: Callable[[list[T]], None] | None = None) -> None:
        """`inline()`: whether a send must run in the caller's thread instead (testing's
        inline worker runs the jobs in the submit's own call). `gather()`, asked after each
        send: how long to let further items gather before the next one (0: none).
        `herald`: sends wake-ups for jobs not committed yet (see `herald`)."""
        self._send = send
        self._herald = herald
        self._name = name
        self._inline = inline
        self._gather = gather
        self._reset()
        _LIVE.add(self)  # type: ignore[arg-type]

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._sending = threading.Lock()  # held while a send runs: a fork waits for it
        self._pending: list[T] = []
        self._heralds: list[T] = []
        self._taken = 0  # how many handed over so far were taken by the thread and sent
        self._given = 0
        self._thread: threading.Thread | None = None

    def wake(self, items: Sequence[T]) -> None:
        """Send these after the caller returns (their jobs are committed already); inline:
        before it returns."""
        if not items:
            return
        if self._inline():
            self._send(list(items))
            return
        with self._cond:
            self._pending.extend(items)
            self._given += len(items)
            self._start()

    def herald(self, items: Sequence[T]) -> None:
        """Send wake-ups for these at once, while the caller commits their jobs, so that the
        message and the commit overlap; the caller still hands them to `wake` once they are
        committed, whose send checks again (engine/wakes.py: "Heralds"). A herald whose
        `wake` came first is not sent."""
        if not items or self._herald is None or self._inline():
            return
        with self._cond:
            self._heralds.extend(items)
            self._start()

    def _start(self) -> None:
        """The thread, started if need be, told there is work (the caller holds _cond)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        self._cond.notify_all()

    def flush(self, timeout: float = EXIT_FLUSH_SECONDS) -> bool:
        """Wait until everything handed over before this call was sent; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._given
            while self._taken < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                if not (self._pending or self._heralds):
                    self._cond.wait(IDLE_SECONDS)
                if not (self._pending or self._heralds):
                    self._thread = None
                    return
                batch, self._pending = self._pending, []
                committed = {id(item) for item in batch}
                heralds = [h for h in self._heralds if id(h) not in committed]
                self._heralds = []
            with self._sending:
                if heralds and self._herald is not None:
                    self._send_heralds(heralds)
                if batch:
                    self._send_committed(batch)
            if not batch:
                continue
            with self._cond:
                self._taken += len(batch)
                self._cond.notify_all()
            pause = self._gather()
            if pause > 0:
                time.sleep(pause)

    def _send_heralds(self, heralds: list[T]) -> None:
        assert self._herald is not None
        try:
            self._herald(heralds)
        except Exception:  # noqa: BLE001 - their own wakes follow
            log.debug("%d herald(s) not sent", len(heralds), exc_info=True)

    def _send_committed(self, batch: list[T]) -> None:
        try:
            self._send(batch)
        except Exception:  # noqa: BLE001 - the jobs are committed; the relay covers them
            log.exception("%d wake-up(s) not sent; the relay sends them later", len(batch))


def flush_all() -> None:
    """Wait (a few seconds at most) for every waker of this process: before it exits."""
    deadline = time.monotonic() + EXIT_FLUSH_SECONDS
    for waker in list(_LIVE):
        if not waker.flush(max(0.0, deadline - time.monotonic())):
            log.warning("exiting with wake-ups unsent; the relay sends them later")


_HELD_FOR_FORK: list[threading.Lock] = []


def _hold_sends() -> None:
    """Before a fork: wait (a few seconds at most) for sends in flight to finish. A send holds
    locks of the broker client's connection pool; a child forked meanwhile inherits them held
    and blocks on its first use of that pool (seen: a child stuck in kombu's after-fork
    cleanup, in redis-py's ConnectionPool.reset)."""
    deadline = time.monotonic() + EXIT_FLUSH_SECONDS
    for waker in list(_LIVE):
        if waker._sending.acquire(timeout=max(0.0, deadline - time.monotonic())):
            _HELD_FOR_FORK.append(waker._sending)


def _release_sends() -> None:
    while _HELD_FOR_FORK:
        _HELD_FOR_FORK.pop().release()


def _forget_parents_thread() -> None:
    """A forked child has no sender thread, and its locks may have been held at the fork: the
    parent's pending wake-ups are the parent's to send."""
    _HELD_FOR_FORK.clear()
    for waker in list(_LIVE):
        waker._reset()


atexit.register(flush_all)  # a pool child ends by os._exit: the worker calls it there
os.register_at_fork(before=_hold_sends, after_in_parent=_release_sends,
                    after_in_child=_forget_parents_thread)
