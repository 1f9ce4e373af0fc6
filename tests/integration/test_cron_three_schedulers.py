"""Three schedulers at once for two minutes: every fire of every schedule is exactly one job."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from sqlalchemy import select

from crisper import cron
from crisper.store import utcnow
from crisper.store.models import jobs
from tests.harness import Backend, wait_for

RUN_SECONDS = 120


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.backends("postgres-redis")
def test_three_schedulers_fire_each_schedule_once_per_fire(backend: Backend) -> None:
    # Given a schedule every 2 seconds, one every 5 seconds and one every minute
    specs = {"s2": "*/2 * * * * *", "s5": "*/5 * * * * *", "m1": "* * * * *"}
    for name, expr in specs.items():
        backend.app.schedules.add(name, "probe.noop", expr)
    created = {name: backend.app.schedules.get(name).created_at for name in specs}

    # When three schedulers run side by side for two minutes
    procs = [backend.start_scheduler() for _ in range(3)]
    time.sleep(RUN_SECONDS)
    end = utcnow()
    wait_for(lambda: all(backend.app.schedules.get(n).next_fire_at > end for n in specs), 30,
             "the schedulers to take every fire up to the end")
    for proc in procs:
        proc.stop()

    # Then each fire time up to the end has exactly one job, recorded with its schedule
    with backend.app.store.read() as session:
        rows = session.execute(select(jobs.c.schedule_name, jobs.c.fire_time)
                               .where(jobs.c.schedule_name.is_not(None))).all()
    per_fire = Counter((r.schedule_name, r.fire_time) for r in rows)
    assert set(per_fire.values()) == {1}
    report = {}
    for name, expr in specs.items():
        expected = [f for f in cron.next_fires(expr, "UTC", created[name], 200) if f <= end]
        got = sorted(t for (n, t) in per_fire if n == name)
        assert [t for t in got if t <= end] == expected, name
        assert set(got) <= set(cron.next_fires(expr, "UTC", created[name], 300)), name
        report[name] = (len(got), len(expected))
        assert backend.app.schedules.get(name).fires == len(got)
    print(f"\nfires per schedule with three schedulers over {RUN_SECONDS}s "
          f"(jobs, expected fires): {report}")
    # And no scheduler hit the unique index (no duplicate fire was even attempted)
    for proc in procs:
        assert "IntegrityError" not in proc.output()
