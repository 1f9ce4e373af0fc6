"""The observe buffer and its flusher: a task's signals only touch memory, a thread writes.

Per process, observations wait in a bounded dict (one entry per task, merged), and a
background thread writes them every `observe_flush_seconds` in one transaction — at most one
row statement per task per flush. When the database is down the thread keeps what it has
(up to the bound), backs off and tries again; what does not fit is dropped, counted and
logged. Nothing here ever raises into a task or waits on the database in its thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from crisper.engine.observation import Observation, capped_json, encode_params, merge

log = logging.getLogger("crisper.observe")
MAX_BACKOFF = 30.0
LOG_EVERY = 10.0  # seconds between two warnings about the same trouble


@dataclass
class Counters:
    recorded: int = 0
    written: int = 0
    dropped: int = 0
    failed_flushes: int = 0


class ObserveBuffer:
    """Observations by task id, merged, at most `limit` tasks; the surplus is dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.counters = Counters()
        self._items: dict[str, Observation] = {}
        self._lock = threading.Lock()

    def add(self, obs: Observation) -> None:
        with self._lock:
            known = self._items.get(obs.task_id)
            if known is not None:
                self._items[obs.task_id] = merge(known, obs)
            elif len(self._items) < self.limit:
                self._items[obs.task_id] = obs
            else:
                self.counters.dropped += 1
                return
            self.counters.recorded += 1

    def take(self) -> dict[str, Observation]:
        with self._lock:
            items, self._items = self._items, {}
            return items

    def put_back(self, items: dict[str, Observation]) -> None:
        """Observations a failed flush could not write wait for the next one (bound kept)."""
        with self._lock:
            for task_id, obs in items.items():
                known = self._items.get(task_id)
                if known is not None:
                    self._items[task_id] = merge(obs, known)
                elif len(self._items) < self.limit:
                    self._items[task_id] = obs
                else:
                    self.counters.dropped += 1

    def __len__(self) -> int:
        return len(self._items)


Writer = Callable[[list[dict[str, Any]]], None]


@dataclass
class Flusher:
    """The thread that empties a buffer into the store; `extra` runs after each good flush."""

    buffer: ObserveBuffer
    write: Writer
    every: float
    payload_chars: int
    extra: list[Callable[[], None]] = field(default_factory=list)
    before: list[Callable[[], None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _failures: int = 0
    _last_warning: float = 0.0
    _dropped_logged: int = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"crisper-observe-{os.getpid()}",
                                        daemon=True)
        self._thread.start()

    def stop(self, flush: bool = True) -> None:
        """Stop the thread; with `flush`, try one last write (bounded by the connect timeout)."""
        self._stop.set()
        if flush:
            self.flush_once()

    def _loop(self) -> None:
        while not self._stop.wait(self._pause()):
            self.flush_once()

    def _pause(self) -> float:
        return min(MAX_BACKOFF, self.every * float(2 ** min(self._failures, 5)))

    def flush_once(self) -> bool:
        """Write what is buffered; on failure keep it for the next try. Never raises."""
        for step in self.before:
            step()
        items = self.buffer.take()
        try:
            if items:
                self.write([row(o, self.payload_chars) for o in items.values()])
            for step in self.extra:
                step()
        except Exception as exc:  # noqa: BLE001 - the observed task must never see our trouble
            self.buffer.put_back(items)
            self._failures += 1
            self.buffer.counters.failed_flushes += 1
            self._warn(f"observe: could not write {len(items)} task record(s), kept for the "
                       f"next try ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
            return False
        if self._failures:
            log.warning("observe: the store is writable again; records written")
        self._failures = 0
        self.buffer.counters.written += len(items)
        self._report_drops()
        return True

    def _report_drops(self) -> None:
        dropped = self.buffer.counters.dropped
        if dropped > self._dropped_logged:
            self._warn(f"observe: buffer full ({self.buffer.limit} tasks): {dropped} record(s) "
                       "dropped in this process so far")
            self._dropped_logged = dropped

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= LOG_EVERY:
            self._last_warning = now
            dropped = self.buffer.counters.dropped
            log.warning("%s%s", message, f"; {dropped} dropped so far" if dropped else "")


def row(obs: Observation, payload_chars: int) -> dict[str, Any]:
    """An observation as the values of its jobs row (the store fills the constant columns)."""
    from crisper.ids import new_id

    created = obs.created_at or obs.at
    params = obs.params if obs.params is not None else encode_params(obs.raw, payload_chars)
    return {
        "id": new_id(created.timestamp()), "task_id": obs.task_id[:64], "type": obs.type[:200],
        "queue": (obs.queue or "")[:200], "state": obs.state.value, "params": params,
        "result": None if obs.result is None else capped_json(obs.result, payload_chars),
        "error": obs.error, "attempt": obs.attempt,
        "max_attempts": max(obs.max_attempts or 1, obs.attempt), "worker": obs.worker,
        "created_at": created, "queued_at": created, "run_at": obs.run_at,
        "started_at": obs.started_at, "finished_at": obs.finished_at,
        "cancelled_at": obs.cancelled_at,
    }
