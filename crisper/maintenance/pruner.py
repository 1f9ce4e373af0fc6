"""Retention: finished jobs past their age are deleted with their history; payloads dropped.

A job type may set its own ages per final state and a shorter age after which only the
payload (params, result, logs) goes (`@crisper.job(retention=Retention(...))`); every other
type uses `retention_seconds` for every final state. A workflow's own rows go once it has
ended and every one of its jobs is gone.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from crisper.registry import Registry
from crisper.retention import FINAL_STATES, Retention
from crisper.settings import Settings
from crisper.store import Store
from crisper.store import retention as retention_sql
from crisper.store import workers as worker_sql

BATCH = 5000


def own_retentions(registry: Registry) -> dict[str, Retention]:
    return {t.name: t.options.retention for t in registry if t.options.retention is not None}


def prune(store: Store, settings: Settings, registry: Registry, at: datetime) -> int:
    default = settings.retention_seconds
    own = own_retentions(registry)
    done = 0
    with store.transaction() as session:
        for state in FINAL_STATES:
            done += retention_sql.prune(session, state, at - timedelta(seconds=default), BATCH,
                                        other_than=sorted(own))
            for name, kept in own.items():
                before = at - timedelta(seconds=kept.age(state, default))
                done += retention_sql.prune(session, state, before, BATCH, types=[name])
        for name, kept in own.items():
            payload = kept.payload_seconds
            if payload is not None:
                done += retention_sql.drop_payloads(
                    session, name, at - timedelta(seconds=payload), BATCH, at)
        done += retention_sql.prune_workflows(session, BATCH)
        worker_sql.forget(session, at - timedelta(days=1))
    return done
