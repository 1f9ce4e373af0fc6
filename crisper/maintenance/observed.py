"""Observed Celery tasks whose worker went silent end `failed` (WorkerLost), not `running`.

Observing workers do this themselves; the scheduler does it too, so that a whole fleet
killed at once is still noticed (docs/observe.md).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from crisper.store import observed as observed_sql

if TYPE_CHECKING:
    from crisper.app import Crisper


def mark_lost(crisper: Crisper, at: datetime) -> int:
    cutoff = at - timedelta(seconds=crisper.settings.worker_lost_after_seconds)
    with crisper.store.transaction() as session:
        return len(observed_sql.mark_lost(session, at, cutoff))
