"""Timers: scheduled and retrying jobs whose time has come become queued (no broker ETAs)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from crisper.store import sweeps as sweep_sql

if TYPE_CHECKING:
    from crisper.app import Crisper

BATCH = 1000


def promote_due(crisper: Crisper, at: datetime) -> int:
    with crisper.store.transaction() as session:
        return sweep_sql.promote_due(session, at, BATCH)
