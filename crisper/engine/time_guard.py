"""Each job's own soft and hard time limits, enforced by Crisper inside the pool child.

A wake-up message may run many jobs one after another (the runner claims the next one from
the database after each), so Celery's limits, which cover a whole message, cannot carry a
job's. Instead, while a job runs, two timers of its own watch it: at the soft limit the
process signals itself as Celery's pool does (SIGUSR1: billiard's handler raises
SoftTimeLimitExceeded in the job's thread); at the hard limit it logs and kills itself
(SIGKILL), as Celery's pool kills a child: the lease then runs out and the lifeline rescues the
job (a job that keeps doing so is stopped as a poison pill).

Only a prefork pool child can be stopped this way (runner.can_force_stop); elsewhere the
limits are not enforced, as Celery's were not.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import uuid
from dataclasses import dataclass

log = logging.getLogger(__name__)
SOFT_SIGNAL = getattr(signal, "SIGUSR1", None)


@dataclass(frozen=True)
class Limits:
    """A job's limits in seconds from its start: either may be None (no such limit)."""

    soft: float | None
    hard: float | None


def limits_of(timeout: float | None, own_hard: float | None, type_hard: float | None
              ) -> Limits:
    """The job's own hard limit when it has one (with its stored soft one), else its type's."""
    return Limits(timeout, own_hard if own_hard is not None else type_hard)


class TimeGuard:
    """The timers of the one job this process runs at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: uuid.UUID | None = None
        self._timers: list[threading.Timer] = []

    def start(self, job_id: uuid.UUID, name: str, limits: Limits) -> None:
        """Watch the job now starting (no timer at all for a job without limits)."""
        with self._lock:
            self._current = job_id
            if limits.soft is not None and SOFT_SIGNAL is not None and (
                    limits.hard is None or limits.soft < limits.hard):
                self._arm(limits.soft, self._soft, job_id)
            if limits.hard is not None:
                self._arm(limits.hard, self._hard, job_id, name, limits.hard)

    def stop(self) -> None:
        """The job ended (before its outcome is written): its timers may no longer strike."""
        with self._lock:
            self._current = None
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()

    def _arm(self, after: float, action: object, *args: object) -> None:
        timer = threading.Timer(after, action, args)  # type: ignore[arg-type]
        timer.daemon = True
        timer.start()
        self._timers.append(timer)

    def _soft(self, job_id: uuid.UUID) -> None:
        with self._lock:
            if self._current == job_id and SOFT_SIGNAL is not None:
                os.kill(os.getpid(), SOFT_SIGNAL)

    def _hard(self, job_id: uuid.UUID, name: str, hard: float) -> None:
        with self._lock:
            if self._current != job_id:
                return
            log.error("Hard time limit (%gs) exceeded for %s[%s]: the process is killed", hard,
                      name, job_id)
            for handler in logging.getLogger().handlers + log.handlers:
                handler.flush()
            os.kill(os.getpid(), signal.SIGKILL)
