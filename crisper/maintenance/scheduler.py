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
from crisper.maintenance import (
    canceller,
    cron,
    deliverer,
    lifeline,
    observed,
    pruner,
    relay,
    timers,
    workflows,
)
from crisper.maintenance.runbook import RunBook
from crisper.retention import prune_period
from crisper.store import utcnow

if TYPE_CHECKING:
    from crisper.app import Crisper

log = logging.getLogger(__name__)


BROKER = "broker"  # the lane of units that talk to the broker: they run on their own thread
WEBHOOKS = "webhooks"  # the deliverer calls users' URLs: a slow one must hold up nothing else


@dataclass
class Unit:
    name: str
    run: Callable[[Crisper, datetime], int]
    every: float
    next_at: float = 0.0
    lane: str = "store"


def units(crisper: Crisper, relay_state: relay.Relay | None = None) -> list[Unit]:
    tick = crisper.settings.tick_seconds
    relay_state = relay_state or relay.Relay()
    return [
        Unit("timers", timers.promote_due, tick),
        Unit("relay", relay_state.relay, tick, lane=BROKER),
        Unit("lifeline", lifeline.Lifeline(), tick),
        Unit("canceller", canceller.enforce, tick),
        Unit("redispatch", relay.redispatch_lost, max(tick, 2.0), lane=BROKER),
        Unit("pruner", pruner.prune, prune_period(crisper.settings.retention_seconds,
                                                  list(pruner.own_retentions(crisper).values()))),
        Unit("cron", cron.fire_due, tick),
        Unit("observed", observed.mark_lost, max(tick, 5.0)),
        Unit("deliverer", deliverer.Deliverer(), tick, lane=WEBHOOKS),
        Unit("workflows", workflows.announce_finished, tick),
    ]


class Scheduler:
    """Runs the units; those that talk to the broker on a thread of their own, so that a broker
    outage (connect timeouts) never slows the lifeline, timers, canceller or cron."""

    def __init__(self, crisper: Crisper) -> None:
        self.crisper = crisper
        self.relay = relay.Relay()
        self.units = units(crisper, self.relay)
        self.runbook = RunBook(crisper)
        self._broker_down: set[str] = set()

    def tick(self, lane: str | None = None) -> dict[str, int]:
        """Run every unit (of `lane`, if given) that is due; one failing unit does not stop
        the others."""
        done: dict[str, int] = {}
        now = time.monotonic()
        for unit in self.units:
            if lane is not None and unit.lane != lane:
                continue
            if now < unit.next_at:
                continue
            unit.next_at = now + unit.every
            try:
                count = unit.run(self.crisper, utcnow())
            except BrokerUnavailable as exc:
                if unit.name not in self._broker_down:  # one warning per outage, not per tick
                    self._broker_down.add(unit.name)
                    log.warning("%s: %s; its jobs wait until the broker is back", unit.name, exc)
                continue
            except StoreUnavailable as exc:
                log.warning("%s: %s", unit.name, exc)
                continue
            except Exception:
                log.exception("%s failed", unit.name)
                continue
            if unit.name in self._broker_down:
                self._broker_down.discard(unit.name)
                log.info("%s: the broker is back", unit.name)
            if count:
                log.info("%s: %d", unit.name, count)
            done[unit.name] = count
        self.runbook.note(self.units, done)
        return done

    def run(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        log.info("scheduler started")
        self.sync_code_schedules()
        lanes = [threading.Thread(target=self._loop, args=(stop, lane),
                                  name=f"crisper-{lane}", daemon=True)
                 for lane in (BROKER, WEBHOOKS)]
        for thread in lanes:
            thread.start()
        try:
            self._loop(stop, "store")
        finally:
            stop.set()
            for thread in lanes:
                thread.join(timeout=10)
            self.relay.close()
            for unit in self.units:
                if isinstance(unit.run, deliverer.Deliverer):
                    unit.run.close()

    def sync_code_schedules(self) -> None:
        """Bring the schedules declared in code into the store; a failure only logs (the
        database-held schedules still fire, and the next start tries again)."""
        try:
            report = self.crisper.schedules.sync_code()
        except Exception:
            log.exception("could not sync the schedules declared in code")
            return
        for name in report.conflicts:
            log.warning("schedule %r is declared in code but exists from the CLI/API; the "
                        "stored one is kept (remove it to let the code's take over)", name)
        if report.added or report.changed or report.removed:
            log.info("code schedules: added %s, changed %s, removed %s",
                     report.added, report.changed, report.removed)

    def _loop(self, stop: threading.Event, lane: str) -> None:
        while not stop.is_set():
            self.tick(lane)
            stop.wait(self.crisper.settings.tick_seconds)
