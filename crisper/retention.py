"""How long a job type's finished jobs are kept, per final state, and when their payload goes.

Pure: the pruner (crisper/maintenance/pruner.py) asks `age()` and `payload_seconds`.
"""

from __future__ import annotations

from dataclasses import dataclass

from crisper.durations import Duration, option_seconds
from crisper.errors import ConfigurationError
from crisper.states import TERMINAL, JobState

# The pruner never waits longer than this between runs, and runs sooner for short retentions.
MAX_PRUNE_PERIOD = 60.0
FINAL_STATES = sorted(TERMINAL, key=lambda s: s.value)


@dataclass(frozen=True)
class Retention:
    """A job type's own retention: `Retention(succeeded="1d", failed="30d", payload="6h")`.

    Per final state, how long a finished job is kept (None: the app's `retention_seconds`).
    `payload`: after this long the job keeps its record (state, times, error, events) but
    loses its params, result and log lines; it must be shorter than every age set.
    """

    succeeded: Duration | None = None
    failed: Duration | None = None
    cancelled: Duration | None = None
    skipped: Duration | None = None  # workflow nodes not run (a parent failed under "skip")
    payload: Duration | None = None

    def __post_init__(self) -> None:
        ages = [self._seconds(s.value) for s in FINAL_STATES]
        payload = self.payload_seconds
        if payload is not None and any(a is not None and a <= payload for a in ages):
            raise ConfigurationError("retention: payload must be shorter than the record's ages")

    @classmethod
    def every_state(cls, age: Duration) -> Retention:
        return cls(succeeded=age, failed=age, cancelled=age, skipped=age)

    @property
    def payload_seconds(self) -> float | None:
        return self._seconds("payload")

    def age(self, state: JobState, default: float) -> float:
        """Seconds a job finished in `state` is kept."""
        own = self._seconds(state.value)
        return default if own is None else own

    def ages(self) -> list[float]:
        return [a for a in (self._seconds(n) for n in (*(s.value for s in FINAL_STATES),
                                                        "payload")) if a is not None]

    def _seconds(self, field_name: str) -> float | None:
        return option_seconds(f"retention {field_name}", getattr(self, field_name))


def prune_period(default: float, retentions: list[Retention]) -> float:
    """Run often enough that no job outlives its age by more than a tenth of it (max 60 s)."""
    ages = [default] + [a for r in retentions for a in r.ages()]
    return max(0.1, min(MAX_PRUNE_PERIOD, min(ages) / 10))
