"""Timers: scheduled and retrying jobs whose time has come become queued (no broker ETAs).

The maintenance loop runs them every tick, and sooner when a job comes due before the next
tick (`due_in`): a job delayed by a rate limit then starts at its slot, not up to a tick
later, alongside the others whose slots the tick let pass."""

from __future__ import annotations

from datetime import datetime

from crisper.store import Store
from crisper.store import sweeps as sweep_sql

BATCH = 1000


def promote_due(store: Store, at: datetime) -> int:
    with store.transaction() as session:
        return sweep_sql.promote_due(session, at, BATCH)


def due_in(store: Store, at: datetime) -> float | None:
    """Seconds until the first scheduled or retrying job comes due (0 if one is due already;
    None if none waits)."""
    with store.read() as session:
        first = sweep_sql.next_due(session)
    return None if first is None else max(0.0, (first - at).total_seconds())
