"""Timers: scheduled and retrying jobs whose time has come become queued (no broker ETAs)."""

from __future__ import annotations

from datetime import datetime

from crisper.store import Store
from crisper.store import sweeps as sweep_sql

BATCH = 1000


def promote_due(store: Store, at: datetime) -> int:
    with store.transaction() as session:
        return sweep_sql.promote_due(session, at, BATCH)
