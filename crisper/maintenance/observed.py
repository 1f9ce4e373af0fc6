"""Observed Celery tasks whose worker went silent end `failed` (WorkerLost), not `running`.

Observing workers do this themselves; the scheduler does it too, so that a whole fleet
killed at once is still noticed (docs/observe.md).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from crisper.settings import Settings
from crisper.store import Store
from crisper.store import observed as observed_sql


def mark_lost(store: Store, settings: Settings, at: datetime) -> int:
    cutoff = at - timedelta(seconds=settings.worker_lost_after_seconds)
    with store.transaction() as session:
        return len(observed_sql.mark_lost(session, at, cutoff))
