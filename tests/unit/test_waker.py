"""The waker sends wake-ups on a thread of its own: after the caller returns, in bursts, and
never lost to an error, an idle thread or a fork; a fork waits for a send in flight."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

import pytest

from crisper.engine import waker as waker_module
from crisper.engine.waker import Waker


class Recorder:
    """A send that records its batches; it can be held, to let wakes pile up behind it.

    Only in the process that made it: a forked child never touches the events, whose locks
    the parent's held thread may have owned at the fork."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self._owner = os.getpid()

    def __call__(self, batch: list[int]) -> None:
        if os.getpid() == self._owner:
            self.entered.set()
            self.gate.wait(10)
        self.batches.append(batch)


def held_in_send(first: int) -> tuple[Waker[int], Recorder]:
    """A waker whose thread is inside its send of `[first]`, held there until the gate opens."""
    send = Recorder()
    send.gate.clear()
    waker = Waker(send)
    waker.wake([first])
    assert send.entered.wait(5)
    return waker, send


def test_wakes_are_sent_after_the_call_and_flush_waits_for_them() -> None:
    waker, send = held_in_send(1)
    assert send.batches == []  # wake() returned while the send was still held
    assert waker.flush(0.1) is False
    send.gate.set()
    assert waker.flush(5) is True
    assert send.batches == [[1]]


def test_a_burst_behind_a_slow_send_goes_out_as_one_batch() -> None:
    waker, send = held_in_send(0)
    for i in range(1, 6):
        waker.wake([i])
    send.gate.set()
    assert waker.flush(5)
    assert send.batches == [[0], [1, 2, 3, 4, 5]]


def test_a_failing_send_is_logged_and_the_next_wakes_still_go(
        caplog: pytest.LogCaptureFixture) -> None:
    sent: list[list[int]] = []

    def send(batch: list[int]) -> None:
        if batch == [1]:
            raise RuntimeError("broker said no")
        sent.append(batch)

    waker = Waker(send)
    waker.wake([1])
    assert waker.flush(5)
    waker.wake([2])
    assert waker.flush(5)
    assert sent == [[2]]
    assert "1 wake-up(s) not sent" in caplog.text


def test_an_idle_thread_ends_and_the_next_wake_starts_another(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waker_module, "IDLE_SECONDS", 0.05)
    send = Recorder()
    waker = Waker(send, name="crisper-waker-idle-test")
    waker.wake([1])
    assert waker.flush(5)
    deadline = time.monotonic() + 5
    while any(t.name == "crisper-waker-idle-test" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the idle thread did not end"
        time.sleep(0.01)
    waker.wake([2])
    assert waker.flush(5)
    assert send.batches == [[1], [2]]


def _child_sends_only_its_own(waker: Waker[int], send: Recorder) -> None:
    """In the forked child: no thread, nothing pending; its own wake goes out."""
    send.batches.clear()
    waker.wake([3])
    if not (waker.flush(5) and send.batches == [[3]]):
        raise SystemExit(1)


def test_a_forked_child_sends_its_own_wakes_not_the_parents() -> None:
    waker, send = held_in_send(1)  # the parent's wake is in its send as the fork begins
    waker.wake([2])  # pending in the parent at the fork
    threading.Timer(0.3, send.gate.set).start()
    child = multiprocessing.get_context("fork").Process(
        target=_child_sends_only_its_own, args=(waker, send))
    began = time.monotonic()
    child.start()

    # The fork waited for the send in flight (which holds the broker client's locks), and
    # no longer than it took
    assert send.batches[:1] == [[1]]
    assert time.monotonic() - began < waker_module.EXIT_FLUSH_SECONDS
    try:
        child.join(10)
    finally:
        # A child stuck past that would keep this process's inherited pipes open (pytest-xdist
        # then waits on them at the end of the run): it never outlives the test.
        child.kill()
    assert waker.flush(5)
    assert child.exitcode == 0
    assert send.batches == [[1], [2]]


def test_an_inline_waker_sends_in_the_callers_thread_before_returning() -> None:
    threads: list[threading.Thread] = []
    waker = Waker(lambda batch: threads.append(threading.current_thread()),
                  inline=lambda: True)
    waker.wake([1])
    assert threads == [threading.current_thread()]


def test_after_a_send_that_asks_for_it_the_next_wakes_gather_into_one_batch() -> None:
    # Given a waker whose sends ask to let the next wakes gather for 0.3 s
    send = Recorder()
    waker = Waker(send, gather=lambda: 0.3)
    waker.wake([1])
    assert waker.flush(5)

    # When two wakes come 50 ms apart while it gathers
    waker.wake([2])
    time.sleep(0.05)
    waker.wake([3])

    # Then they go out together, in one send
    assert waker.flush(5)
    assert send.batches == [[1], [2, 3]]


def test_without_gathering_a_lone_wake_goes_out_at_once() -> None:
    send = Recorder()
    waker = Waker(send)
    waker.wake([1])
    assert waker.flush(5)
    waker.wake([2])
    assert waker.flush(0.1)  # sent at once, not held back
    time.sleep(0.05)
    waker.wake([3])
    assert waker.flush(5)
    assert send.batches == [[1], [2], [3]]


def test_a_herald_goes_out_before_its_wake_and_is_dropped_once_its_wake_is_in() -> None:
    # Given a waker with a herald send, its thread held inside the send of an earlier wake
    heralds = Recorder()
    send = Recorder()
    send.gate.clear()
    waker = Waker(send, herald=heralds)
    waker.wake([0])
    assert send.entered.wait(5)

    # When one item is heralded and woken while the thread is held (its wake is in), and
    # another is heralded only
    both, alone = [1], [2]
    waker.herald(both)
    waker.wake(both)
    waker.herald(alone)
    send.gate.set()
    assert waker.flush(5)

    # Then only the lone herald went out as a herald, before the wakes of its batch
    assert heralds.batches == [alone]
    assert send.batches == [[0], both]


def test_a_herald_needs_a_herald_send_and_is_not_counted_by_flush() -> None:
    send = Recorder()
    Waker(send).herald([1])  # no herald send: nothing happens
    heralds = Recorder()
    waker = Waker(send, herald=heralds)
    waker.herald([2])
    assert waker.flush(0.0)  # no wake was handed over: nothing to wait for
    deadline = time.monotonic() + 5
    while not heralds.batches and time.monotonic() < deadline:
        time.sleep(0.01)
    assert heralds.batches == [[2]] and send.batches == []
