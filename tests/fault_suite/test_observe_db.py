"""Observe mode with the database down: plain Celery tasks run on time, records come later."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from crisper import Settings
from crisper.states import JobState
from crisper.store import Store
from tests.apps.observed_tasks import build
from tests.fault_suite.private import PrivatePostgres
from tests.harness import FAST, Backend, _redis_prefix, wait_for
from tests.integration.test_observe import celery_worker, record_of

pytestmark = pytest.mark.faults


def stamped(app: object, folder: Path, names: list[str]) -> list[float]:
    """Run one stamp task per name; answer each one's delay from publish to start (s)."""
    sent: dict[str, float] = {}
    for name in names:
        sent[name] = time.time()
        app.tasks["obs.stamp"].delay(str(folder / name))  # type: ignore[attr-defined]
    wait_for(lambda: all((folder / n).exists() and (folder / n).read_text() for n in names),
             90, "the stamp tasks to run")
    return [float((folder / n).read_text()) - sent[n] for n in names]


def test_tasks_do_not_wait_for_a_database_that_is_down(private_postgres: PrivatePostgres,
                                                       tmp_path: Path) -> None:
    """Given an observing `celery -A` worker and caller, when the database stops,
    then tasks still run, with no more delay than a bound, and once it is back every task
    buffered meanwhile is recorded."""
    private_postgres.ensure_running()
    with private_postgres.schema() as db_url, _redis_prefix() as (broker, prefix):
        env = {**FAST, "CRISPER_DATABASE_URL": db_url, "CRISPER_BROKER_URL": broker,
               "CRISPER_BROKER_PREFIX": prefix}
        backend = Backend("observe-db", env, tmp_path)
        schema = Store(db_url)
        schema.create_all()
        schema.close()
        app, crisper = build(Settings(**{k.removeprefix("CRISPER_").lower(): v
                                         for k, v in env.items()}))
        try:
            celery_worker(backend)
            up = stamped(app, tmp_path, [f"up{i}" for i in range(10)])
            private_postgres.stop("fast")
            try:
                down = stamped(app, tmp_path, [f"down{i}" for i in range(20)])
            finally:
                time.sleep(3)  # a few failed flushes in every process
                private_postgres.start()
            print(f"publish-to-start delay, database up: median {statistics.median(up):.3f}s "
                  f"max {max(up):.3f}s; down: median {statistics.median(down):.3f}s "
                  f"max {max(down):.3f}s")
            assert max(down) < 5.0, down

            def all_recorded() -> bool:
                rows = [r for r in crisper.list_jobs(type="obs.stamp", limit=100).items
                        if r.state is JobState.SUCCEEDED]
                return len(rows) == 30
            wait_for(all_recorded, 90, "the buffered records to be written", every=0.5)
            one = crisper.list_jobs(type="obs.stamp", limit=1).items[0]
            assert record_of(crisper, one.task_id or "") is not None
        finally:
            crisper.observer.disconnect()
            crisper.store.close()
            backend.close()
