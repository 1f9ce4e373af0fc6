"""Retention: finished jobs older than the configured age are deleted with their history."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from crisper.store import jobs as job_sql
from crisper.store import workers as worker_sql

if TYPE_CHECKING:
    from crisper.app import Crisper

BATCH = 5000


def prune(crisper: Crisper, at: datetime) -> int:
    before = at - timedelta(seconds=crisper.settings.retention_seconds)
    with crisper.store.transaction() as session:
        pruned = job_sql.prune(session, before, BATCH)
        worker_sql.forget(session, at - timedelta(days=1))
    return pruned
