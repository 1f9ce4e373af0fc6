"""A job's attempts read from its event history: who ran each one, how long, and how it ended.

Pure: the events are the truth (every state change is one), this only groups them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from crisper.records import EventRecord


@dataclass(frozen=True)
class Attempt:
    number: int
    worker: str | None
    started_at: datetime
    ended_at: datetime | None
    outcome: str | None  # the state it ended in; None while it runs
    reason: str | None  # why it ended (succeeded, error, timeout, worker_lost, cancelled, ...)

    @property
    def seconds(self) -> float | None:
        if self.ended_at is None:
            return None
        return max((self.ended_at - self.started_at).total_seconds(), 0.0)


def attempts(events: list[EventRecord]) -> list[Attempt]:
    """One entry per time the job entered `running`, oldest first."""
    out: list[Attempt] = []
    current: EventRecord | None = None
    for e in events:
        if e.to_state == "running" and e.from_state != "running":
            current = e
            continue
        if current is not None and e.from_state == "running" and e.to_state != "running":
            out.append(Attempt(current.attempt, current.worker or e.worker, current.at, e.at,
                               e.to_state, e.reason))
            current = None
    if current is not None:
        out.append(Attempt(current.attempt, current.worker, current.at, None, None, None))
    return out
