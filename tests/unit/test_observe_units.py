"""Observe mode: merging sightings of one task, the bounded buffer, size caps, SQLite upsert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crisper.engine.observation import Observation, capped_json, encode_params, merge
from crisper.engine.observe_flush import Flusher, ObserveBuffer, row
from crisper.states import JobState
from crisper.store import Store
from crisper.store import jobs as job_sql
from crisper.store import observed as observed_sql

S = JobState
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def seen(state: JobState, attempt: int = 1, second: int = 0, **fields: object) -> Observation:
    return Observation("t1", "app.task", state, T0 + timedelta(seconds=second), attempt=attempt,
                       **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("first", "second", "state", "attempt"), [
    (seen(S.QUEUED), seen(S.RUNNING, second=1), S.RUNNING, 1),
    (seen(S.RUNNING, second=1), seen(S.QUEUED), S.RUNNING, 1),  # the caller flushed late
    (seen(S.SUCCEEDED, second=2), seen(S.RUNNING, second=1), S.SUCCEEDED, 1),
    (seen(S.RETRYING, second=1), seen(S.QUEUED, attempt=2, second=2), S.QUEUED, 2),
    (seen(S.RUNNING, attempt=2, second=3), seen(S.RETRYING, second=1), S.RUNNING, 2),
    (seen(S.FAILED, second=5), seen(S.SUCCEEDED, second=4), S.SUCCEEDED, 1),  # real outcome wins
])
def test_the_later_step_wins_in_either_order(first: Observation, second: Observation,
                                              state: JobState, attempt: int) -> None:
    merged = merge(first, second)
    assert (merged.state, merged.attempt) == (state, attempt)


def test_known_facts_are_kept_from_whichever_step_gave_them() -> None:
    published = seen(S.QUEUED, queue="mail", raw=((1,), {}), created_at=T0, max_attempts=4)
    retried = seen(S.RETRYING, second=1, worker="w@h", error={"type": "Boom"})
    done = seen(S.SUCCEEDED, attempt=2, second=3, result=7, finished_at=T0)
    merged = merge(merge(done, retried), published)
    assert (merged.state, merged.queue, merged.worker, merged.result) == (
        S.SUCCEEDED, "mail", "w@h", 7)
    assert merged.raw == ((1,), {}) and merged.created_at == T0 and merged.max_attempts == 4
    assert merged.error == {"type": "Boom"}  # the retry's reason stays visible


def test_the_buffer_merges_per_task_and_drops_beyond_its_bound() -> None:
    buffer = ObserveBuffer(limit=2)
    buffer.add(seen(S.QUEUED))
    buffer.add(seen(S.RUNNING, second=1))  # same task: merged, no new entry
    buffer.add(Observation("t2", "x", S.QUEUED, T0))
    buffer.add(Observation("t3", "x", S.QUEUED, T0))  # over the bound
    assert len(buffer) == 2 and buffer.counters.dropped == 1
    assert buffer.take()["t1"].state is S.RUNNING and len(buffer) == 0


def test_a_failed_flush_keeps_the_records_and_never_raises() -> None:
    calls: list[int] = []

    def down(rows: list[dict[str, object]]) -> None:
        calls.append(len(rows))
        raise ConnectionError("database is down")

    buffer = ObserveBuffer(limit=10)
    flusher = Flusher(buffer, down, every=1.0, payload_chars=100)
    buffer.add(seen(S.RUNNING))
    assert flusher.flush_once() is False
    assert len(buffer) == 1 and calls == [1] and buffer.counters.failed_flushes == 1
    written: list[list[dict[str, object]]] = []
    flusher.write = written.append
    assert flusher.flush_once() is True
    assert [r["task_id"] for r in written[0]] == ["t1"]


def test_payloads_are_capped_and_anything_becomes_json() -> None:
    assert encode_params(((1, "a"), {"k": object}), 1000)["args"] == [1, "a"]
    big = capped_json("x" * 5000, 100)
    assert big["truncated"] is True and len(big["preview"]) < 200
    assert encode_params(((list(range(10000)),), {}), 50)["args"]["truncated"] is True


def test_the_sqlite_upsert_merges_like_the_postgresql_one(tmp_path: Path) -> None:
    """Given the embedded default's SQLite store, when a task's steps arrive out of order,
    then its one observed row ends with the later step and every known fact."""
    store = Store(f"sqlite:///{tmp_path / 'obs.db'}")
    store.create_all()
    try:
        published = seen(S.QUEUED, queue="mail", raw=((1,), {}), created_at=T0)
        done = seen(S.SUCCEEDED, second=2, worker="w@h", result=[1], finished_at=T0)
        for batch in ([done], [published]):
            with store.transaction() as session:
                observed_sql.upsert(session, [row(o, 100) for o in batch])
        with store.read() as session:
            records = job_sql.list_jobs(session, job_sql.JobFilter())
        assert len(records) == 1
        r = records[0]
        assert (r.source, r.state, r.queue, r.worker, r.result) == (
            "observed", S.SUCCEEDED, "mail", "w@h", [1])
        assert r.params == {"args": [1], "kwargs": {}} and r.created_at == T0
    finally:
        store.close()


def test_a_run_is_one_record_from_start_to_outcome(tmp_path: Path) -> None:
    """Given a plain task started in this process, when it ends (success, Ignore, Reject, or no
    outcome signal), then one record carries its start and outcome; one still running at a
    flush is recorded as running then, once."""
    from celery import Celery

    from crisper import Crisper, Settings
    from crisper.engine.observe import Observer

    app = Celery("units", set_as_current=False)

    @app.task(name="units.plain", max_retries=2)
    def plain(x: int) -> None:
        return None

    task: Any = plain
    crisper = Crisper("units", celery=app, settings=Settings(
        database_url=f"sqlite:///{tmp_path / 'u.db'}", observe=False,
        observe_flush_seconds=3600))
    observer = Observer(crisper.registry, crisper.settings, app)

    def run(task_id: str, state: str | None, succeed: bool = False, flush: bool = False) -> None:
        task.push_request(id=task_id, hostname="w@h", delivery_info={"routing_key": "q"})
        observer._started(sender=task, task_id=task_id, args=(1,), kwargs={})
        if flush:
            observer._release_running()
            observer._release_running()  # told once only
        if succeed:
            observer._succeeded(sender=task, result=7)
        observer._ended(sender=task, task_id=task_id, state=state)
        task.pop_request()

    try:
        run("ok", "SUCCESS", succeed=True)
        run("ign", "IGNORED")
        run("rej", "REJECTED")
        run("none", "SUCCESS")
        run("long", "SUCCESS", flush=True)
        seen_states = {k: (o.state, o.started_at is not None, o.raw, o.queue, o.max_attempts)
                       for k, o in observer.buffer.take().items()}
        assert seen_states == {
            "ok": (S.SUCCEEDED, True, ((1,), {}), "q", 3),
            "ign": (S.SUCCEEDED, True, ((1,), {}), "q", 3),
            "rej": (S.FAILED, True, ((1,), {}), "q", 3),
            "none": (S.RUNNING, True, ((1,), {}), "q", 3),
            "long": (S.RUNNING, True, ((1,), {}), "q", 3),
        }
        assert observer.buffer.counters.recorded == 5 and not observer._running
    finally:
        if observer._flusher is not None:
            observer._flusher.stop(flush=False)
