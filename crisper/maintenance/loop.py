"""The maintenance loop: runs each maintenance unit on its period. Safe to run several.

Users start it as `crisper scheduler` (the command keeps that name); in the code it is the
maintenance loop, so that "schedule" means only users' cron schedules (docs/glossary.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from crisper.engine.dispatcher import Dispatcher
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
from crisper.registry import Registry
from crisper.retention import prune_period
from crisper.schedules import ScheduleService
from crisper.service import JobService
from crisper.settings import Settings
from crisper.store import Store, utcnow

log = logging.getLogger(__name__)


STORE = "store"  # the lane of units that talk to the database only
BROKER = "broker"  # the lane of units that talk to the broker: a broker outage slows no other
WEBHOOKS = "webhooks"  # the deliverer calls users' URLs: a slow one must hold up nothing else
LANES = (STORE, BROKER, WEBHOOKS)
# A unit to run at once after another moved jobs: jobs the timers queued get their wake-ups.
THEN = {"timers": "relay"}
# A timer's wait ends this long after its job's run_at, so that the job is due when looked at.
TIMER_MARGIN_SECONDS = 0.001


@dataclass
class Unit:
    name: str
    run: Callable[[datetime], int]
    every: float
    next_at: float = 0.0
    lane: str = STORE
    then: str | None = None  # a unit to run at once after this one moved jobs (THEN)


def periods(settings: Settings, registry: Registry) -> list[tuple[str, float]]:
    """Each unit's name and period, in the order the loop runs them."""
    tick = settings.tick_seconds
    pruning = prune_period(settings.retention_seconds,
                           list(pruner.own_retentions(registry).values()))
    return [("timers", tick), ("relay", tick), ("lifeline", tick), ("canceller", tick),
            ("redispatch", max(tick, 2.0)), ("pruner", pruning), ("cron", tick),
            ("observed", max(tick, 5.0)), ("deliverer", tick), ("workflows", tick)]


class MaintenanceLoop:
    """Runs the units; those that talk to the broker on a thread of their own, so that a broker
    outage (connect timeouts) never slows the lifeline, timers, canceller or cron."""

    def __init__(self, store: Store, settings: Settings, registry: Registry,
                 dispatcher: Dispatcher, jobs: JobService, schedules: ScheduleService) -> None:
        self.settings = settings
        self.schedules = schedules
        self.relay = relay.Relay(store, dispatcher, settings)
        self.deliverer = deliverer.Deliverer(store, settings, jobs)
        self.store = store
        runs: dict[str, tuple[Callable[[datetime], int], str]] = {
            "timers": (partial(timers.promote_due, store), STORE),
            "relay": (self.relay.relay, BROKER),
            "lifeline": (lifeline.Lifeline(store, settings), STORE),
            "canceller": (partial(canceller.enforce, store, settings, registry, dispatcher),
                          STORE),
            "redispatch": (self.relay.redispatch_lost, BROKER),
            "pruner": (partial(pruner.prune, store, settings, registry), STORE),
            "cron": (partial(cron.fire_due, store, jobs), STORE),
            "observed": (partial(observed.mark_lost, store, settings), STORE),
            "deliverer": (self.deliverer, WEBHOOKS),
            "workflows": (partial(workflows.announce_finished, store), STORE),
        }
        self.units = [Unit(name, runs[name][0], every, lane=runs[name][1], then=THEN.get(name))
                      for name, every in periods(settings, registry)]
        self._by_name = {unit.name: unit for unit in self.units}
        self.runbook = RunBook(store)
        self._broker_down: set[str] = set()
        self._urgent: set[str] = set()  # units to run at their lane's next turn, due or not
        self._nudges = {lane: threading.Event() for lane in LANES}

    def tick(self, lane: str | None = None) -> dict[str, int]:
        """Run every unit (of `lane`, if given) that is due; one failing unit does not stop
        the others."""
        done: dict[str, int] = {}
        now = time.monotonic()
        for unit in self.units:
            if lane is not None and unit.lane != lane:
                continue
            if now < unit.next_at and unit.name not in self._urgent:
                continue
            self._urgent.discard(unit.name)
            unit.next_at = now + unit.every
            try:
                count = unit.run(utcnow())
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
                if unit.then is not None:
                    self.nudge(unit.then)
            done[unit.name] = count
        self.runbook.note(self.units, done)
        return done

    def nudge(self, name: str) -> None:
        """Run unit `name` at its lane's next turn, and make that turn now."""
        self._urgent.add(name)
        self._nudges[self._by_name[name].lane].set()

    def run(self, stop: threading.Event | None = None) -> None:
        """Run every lane on a thread of its own until `stop` is set."""
        stop = stop or threading.Event()
        log.info("scheduler started")
        self.sync_code_schedules()
        lanes = [threading.Thread(target=self._loop, args=(stop, lane),
                                  name=f"crisper-{lane}", daemon=True) for lane in LANES]
        for thread in lanes:
            thread.start()
        try:
            stop.wait()
        finally:
            stop.set()
            for nudge in self._nudges.values():
                nudge.set()
            for thread in lanes:
                thread.join(timeout=10)
            self.relay.close()
            self.deliverer.close()

    def sync_code_schedules(self) -> None:
        """Bring the schedules declared in code into the store; a failure only logs (the
        database-held schedules still fire, and the next start tries again)."""
        try:
            report = self.schedules.sync_code()
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
        nudge = self._nudges[lane]
        while not stop.is_set():
            nudge.clear()  # before the turn: a nudge during it brings the next one at once
            self.tick(lane)
            nudge.wait(self._pause(lane))

    def _pause(self, lane: str) -> float:
        """Seconds until the lane's next turn: a tick, or less when a timer comes due sooner
        (a job delayed by a rate limit, a retry, a run_at) than the next tick."""
        pause = self.settings.tick_seconds
        if lane == STORE:
            try:
                due = timers.due_in(self.store, utcnow())
            except Exception:  # noqa: BLE001 - the timers unit reports it; the lane goes on
                due = None
            # Not when already due: what the timers just could not move must not spin them.
            if due is not None and 0 < due < pause:
                self._urgent.add("timers")
                pause = due + TIMER_MARGIN_SECONDS
        return pause
