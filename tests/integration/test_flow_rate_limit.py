"""A global rate limit across four workers: 60/m holds to within 3%, never above the burst."""

from __future__ import annotations

import statistics
from datetime import datetime

import pytest
from sqlalchemy import select

from crisper import SubmitRequest
from crisper.store.models import job_events, jobs
from tests.apps import flow
from tests.harness import Backend, wait_for

LIMIT_PER_MINUTE = 60
MINUTES = 3


def slots(app: object, ids: set[str]) -> dict[str, tuple[float, float]]:
    """{job id: (its rate slot, its start)} for the started jobs, as POSIX seconds.

    A job deferred by the limiter holds a slot at the deferral's "until" (the event says when);
    a job admitted at once took its slot when it was claimed, which is its start.
    """
    with app.store.read() as session:  # type: ignore[attr-defined]
        started = {str(r.id): r.started_at for r in session.execute(
            select(jobs.c.id, jobs.c.started_at).where(jobs.c.type == "flow.tick",
                                                      jobs.c.started_at.is_not(None)))
            if str(r.id) in ids}
        waits = session.execute(
            select(job_events.c.job_id, job_events.c.detail)
            .where(job_events.c.reason == "rate_limited").order_by(job_events.c.id))
        until = {str(r.job_id): datetime.fromisoformat(r.detail["until"]) for r in waits}
    return {i: (until.get(i, at).timestamp(), at.timestamp()) for i, at in started.items()}


def starts(app: object, ids: set[str]) -> list[datetime]:
    with app.store.read() as session:  # type: ignore[attr-defined]
        rows = session.execute(select(jobs.c.id, jobs.c.started_at)
                               .where(jobs.c.type == "flow.tick", jobs.c.started_at.is_not(None)))
        return sorted(r.started_at for r in rows if str(r.id) in ids)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.backends("postgres-redis")
def test_a_global_rate_limit_holds_across_four_workers(backend: Backend) -> None:
    # Given three minutes of backlog (and a little more) for a 60/m job type, burst 3
    app = flow.build(backend.settings)
    backlog = LIMIT_PER_MINUTE * MINUTES + 20
    ids = {str(j.id) for j in app.submit_many(
        [SubmitRequest("flow.tick", {"n": i}) for i in range(backlog)])}

    # When four workers and a scheduler drain it
    backend.start_scheduler()
    for _ in range(4):
        backend.start_worker(concurrency=1, CRISPER_APP="tests.apps.flow")
    wanted = LIMIT_PER_MINUTE * MINUTES + flow.BURST + 1
    wait_for(lambda: len(starts(app, ids)) >= wanted, MINUTES * 60 + 90,
             f"{wanted} starts", every=2)
    times = [t.timestamp() for t in starts(app, ids)]
    held = slots(app, ids)

    # Then after the initial burst, each minute holds 60 starts within 3%. The minutes are
    # laid on the limiter's schedule (one slot a second), placed by the median offset of the
    # starts from it: anchoring them on the first start instead would shift every window by
    # that start's own pickup delay and count a start too many per second of delay.
    steady = times[flow.BURST:]
    interval = 60.0 / LIMIT_PER_MINUTE
    t0 = statistics.median(t - k * interval for k, t in enumerate(steady)) - interval / 2
    per_minute = [sum(1 for t in steady if t0 + 60 * m <= t < t0 + 60 * (m + 1))
                  for m in range(MINUTES)]
    start_rate = 60 * (len(steady) - 1) / (steady[-1] - steady[0])
    # the mean rate is the limiter's own, read off the slots it granted: the first and last
    # start each lag their slot by a pickup delay, which alone moved the start-based rate
    # to 61.9/min on a loaded machine while every minute held exactly 60
    slots_after_burst = sorted(slot for slot, _ in held.values())[flow.BURST:]
    mean_rate = 60 * (len(slots_after_burst) - 1) / (slots_after_burst[-1] - slots_after_burst[0])
    print(f"\nstarts per minute after the burst: {per_minute}; mean rate {mean_rate:.2f}/min "
          f"over {len(slots_after_burst)} slots ({start_rate:.2f}/min by start times)")
    for count in per_minute:
        assert abs(count - LIMIT_PER_MINUTE) <= 0.03 * LIMIT_PER_MINUTE, per_minute
    assert abs(mean_rate - LIMIT_PER_MINUTE) <= 0.03 * LIMIT_PER_MINUTE
    # And no 60-second window, anywhere, held more slots than the limit plus the burst, and no
    # job started before its slot. (Starts lag their slots by the pickup delay, which a loaded
    # machine stretches unevenly, so windows of start times measure the machine, not the limit.)
    slot_times = sorted(slot for slot, _ in held.values())
    busiest = max(sum(1 for u in slot_times if t <= u < t + 60) for t in slot_times)
    lag = [start - slot for slot, start in held.values()]
    print(f"busiest 60 s window: {busiest} slots (allowed {LIMIT_PER_MINUTE + flow.BURST}); "
          f"start after slot: median {statistics.median(lag):.3f} s, max {max(lag):.3f} s")
    assert busiest <= LIMIT_PER_MINUTE + flow.BURST
    assert min(lag) >= -0.001, "a job started before its rate slot"
    # And waiting for a token spent no attempt
    with app.store.read() as session:
        attempts = set(session.scalars(select(jobs.c.attempt).where(jobs.c.type == "flow.tick",
                                                                    jobs.c.state == "succeeded")))
    assert attempts == {1}
    app.store.close()
