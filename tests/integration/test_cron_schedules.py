"""Cron schedules in the database: fires, overlap and catch-up policies, jitter, run-now."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import update

from crisper import JobState
from crisper.errors import InvalidRequest, ScheduleNotFound
from crisper.maintenance.cron import fire, fire_due
from crisper.records import JobRecord
from crisper.store import utcnow
from crisper.store.models import schedules
from crisper.store.schedules import ScheduleRecord
from tests.harness import Backend

S = JobState


def schedule_jobs(backend: Backend, name: str) -> list[JobRecord]:
    from crisper.store.jobs import JobFilter

    found = backend.app.jobs.list_jobs(JobFilter(types=["probe.echo", "probe.sleep"]), limit=500)
    return sorted((j for j in found if j.schedule_name == name), key=lambda j: j.fire_time or 0)


EVERY_SECOND = "* * * * * *"
T = utcnow().replace(microsecond=0) + timedelta(seconds=10)


def due_at(backend: Backend, name: str, at: datetime) -> ScheduleRecord:
    """Make the schedule's next fire `at` (a fire time of its cron), as if its time had come."""
    with backend.app.store.transaction() as session:
        session.execute(update(schedules).where(schedules.c.name == name)
                        .values(next_fire_at=at))
    return backend.app.schedules.get(name)


HALF = timedelta(seconds=0.5)


def test_schedules_are_validated_stored_and_listed_with_next_fire_times(backend: Backend) -> None:
    svc = backend.app.schedules
    s = svc.add("report", "probe.echo", "0 9 * * 1-5", params={"number": 1},
                timezone="Europe/Berlin", overlap="skip", catchup="all", jitter=5)
    assert (s.enabled, s.overlap, s.catchup, s.jitter) == (True, "skip", "all", 5.0)
    fires = svc.next_fires(s, 3)
    assert len(fires) == 3 and fires[0] == s.next_fire_at > utcnow()
    assert all(f.astimezone().utcoffset() is not None for f in fires)
    assert [x.name for x in svc.list_schedules()] == ["report"]

    with pytest.raises(InvalidRequest, match="exists already"):
        svc.add("report", "probe.echo", "* * * * *", params={"number": 1})
    assert svc.add("report", "probe.echo", "* * * * *", params={"number": 2},
                   replace=True).params == {"number": 2, "text": ""}
    for bad in (dict(cron_expr="nope"), dict(timezone="Nowhere/City"), dict(overlap="maybe")):
        with pytest.raises(InvalidRequest):
            svc.add("x", "probe.echo", **{"cron_expr": "* * * * *", "params": {"number": 1},
                                          **bad})  # type: ignore[arg-type]

    assert svc.disable("report").next_fire_at is None
    assert svc.enable("report").next_fire_at is not None
    svc.remove("report")
    with pytest.raises(ScheduleNotFound):
        svc.get("report")


def test_a_fire_makes_one_job_recorded_with_its_schedule(backend: Backend) -> None:
    backend.app.schedules.add("tick", "probe.echo", EVERY_SECOND, params={"number": 3})
    s = due_at(backend, "tick", T)

    assert fire_due(backend.app.store, backend.app.jobs, T + HALF) == 1
    app = backend.app
    assert fire(app.store, app.jobs, s, T + HALF) == 0  # the same fire again: another loop lost it

    [job] = schedule_jobs(backend, "tick")
    assert (job.schedule_name, job.fire_time, job.params) == ("tick", s.next_fire_at,
                                                              {"number": 3, "text": ""})
    assert "schedule:tick" in job.tags
    after = backend.app.schedules.get("tick")
    assert (after.fires, after.last_job_id, after.last_fire_at) == (1, job.id, s.next_fire_at)
    assert after.next_fire_at == T + timedelta(seconds=1)


@pytest.mark.parametrize(("overlap", "jobs_made", "first_state"), [
    ("allow", 2, S.QUEUED), ("skip", 1, S.QUEUED), ("cancel", 2, S.CANCELLED),
])
def test_overlap_policies(backend: Backend, overlap: str, jobs_made: int,
                          first_state: S) -> None:
    # Given a schedule whose first job is still active (no worker runs it)
    backend.app.schedules.add("o", "probe.echo", EVERY_SECOND, params={"number": 1},
                              overlap=overlap)  # type: ignore[arg-type]
    due_at(backend, "o", T)
    assert fire_due(backend.app.store, backend.app.jobs, T + HALF) == 1
    # When the next fire comes
    due_at(backend, "o", T + timedelta(seconds=5))
    fire_due(backend.app.store, backend.app.jobs, T + timedelta(seconds=5) + HALF)
    # Then: allow runs both, skip makes none, cancel stops the first and makes the second
    made = schedule_jobs(backend, "o")
    assert len(made) == jobs_made
    assert made[0].state is first_state
    assert backend.app.schedules.get("o").skipped == (1 if overlap == "skip" else 0)


@pytest.mark.parametrize(("catchup", "expected"), [("none", 1), ("all", 10)])
def test_catch_up_after_downtime(backend: Backend, catchup: str, expected: int) -> None:
    # Given an every-minute schedule whose scheduler was down for ten minutes
    backend.app.schedules.add("c", "probe.echo", "* * * * *", params={"number": 1},
                              catchup=catchup, catchup_window=3600)  # type: ignore[arg-type]
    now = utcnow()
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=9)
    with backend.app.store.transaction() as session:
        session.execute(update(schedules).values(next_fire_at=start))
    # When a scheduler comes back
    fire_due(backend.app.store, backend.app.jobs, now)
    # Then "none" fires only the latest minute and "all" every missed one, each once
    made = schedule_jobs(backend, "c")
    assert len(made) == expected
    assert len({j.fire_time for j in made}) == expected
    assert made[-1].fire_time == start + timedelta(minutes=9)
    assert backend.app.schedules.get("c").skipped == 10 - expected


def test_jitter_delays_the_job_within_the_bound(backend: Backend) -> None:
    backend.app.schedules.add("j", "probe.echo", EVERY_SECOND, params={"number": 1}, jitter=120)
    soon = utcnow().replace(microsecond=0) + timedelta(seconds=2)
    s = due_at(backend, "j", soon)
    fire_due(backend.app.store, backend.app.jobs, soon + HALF)
    [job] = schedule_jobs(backend, "j")
    assert job.state is S.SCHEDULED
    assert job.run_at is not None and s.next_fire_at is not None
    assert s.next_fire_at <= job.run_at < s.next_fire_at + timedelta(seconds=120)


def test_run_now_fires_at_once_and_the_job_runs(backend: Backend) -> None:
    backend.start_worker()
    backend.app.schedules.add("n", "probe.echo", "0 0 1 1 *", params={"number": 9})
    job = backend.app.schedules.run_now("n")
    assert job.schedule_name == "n" and job.fire_time is not None
    assert backend.app.get(job.id).wait(timeout=30).result == {"number": 9, "text": ""}
    assert backend.app.schedules.get("n").fires == 1


def test_maintenance_is_listed_as_builtin_schedules_with_its_last_run(backend: Backend) -> None:
    from tests.harness import wait_for

    backend.start_scheduler()

    def recorded() -> bool:
        runs = {b.name: b for b in backend.app.schedules.builtins()}
        return runs["crisper.pruner"].last_run_at is not None

    wait_for(recorded, 30, "the scheduler to record its pruner run")
    runs = {b.name: b for b in backend.app.schedules.builtins()}
    assert {"crisper.pruner", "crisper.lifeline", "crisper.cron"} <= set(runs)
    pruner = runs["crisper.pruner"]
    assert pruner.every == 60.0 and "retention" in pruner.description
    assert runs["crisper.lifeline"].last_run_at is not None
