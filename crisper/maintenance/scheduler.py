"""The scheduler process: runs each maintenance unit on its period. Safe to run several."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from crisper.errors import BrokerUnavailable, StoreUnavailable
from crisper.maintenance import canceller, cron, lifeline, pruner, relay, timers
from crisper.maintenance.runbook import RunBook
from crisper.store import utcnow

if TYPE_CHECKING:
    from crisper.app import Crisper

log = logging.getLogger(__name__)


@dataclass
class Unit:
    name: str
    run: Callable[[Crisper, datetime], int]
    every: float
    next_at: float = 0.0


def units(crisper: Crisper) -> list[Unit]:
    tick = crisper.settings.tick_seconds
    return [
        Unit("timers", timers.promote_due, tick),
        Unit("relay", relay.relay, tick),
        Unit("lifeline", lifeline.Lifeline(), tick),
        Unit("canceller", canceller.enforce, tick),
        Unit("redispatch", relay.redispatch_lost, max(tick, 2.0)),
        Unit("pruner", pruner.prune, 60.0),
        Unit("cron", cron.fire_due, tick),
    ]


class Scheduler:
    def __init__(self, crisper: Crisper) -> None:
        self.crisper = crisper
        self.units = units(crisper)
        self.runbook = RunBook(crisper)

    def tick(self) -> dict[str, int]:
        """Run every unit that is due; one failing unit does not stop the others."""
        done: dict[str, int] = {}
        now = time.monotonic()
        for unit in self.units:
            if now < unit.next_at:
                continue
            unit.next_at = now + unit.every
            try:
                count = unit.run(self.crisper, utcnow())
            except (StoreUnavailable, BrokerUnavailable) as exc:
                log.warning("%s: %s", unit.name, exc)
                continue
            except Exception:
                log.exception("%s failed", unit.name)
                continue
            if count:
                log.info("%s: %d", unit.name, count)
            done[unit.name] = count
        self.runbook.note(self.units, done)
        return done

    def run(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        log.info("scheduler started")
        while not stop.is_set():
            self.tick()
            stop.wait(self.crisper.settings.tick_seconds)
