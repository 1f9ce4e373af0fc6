"""Every event the store writes is a move the state table allows, or a note with no move; and
the store's moves leave the same history on every store (PostgreSQL's one-statement fast
path and COPY, SQLite's portable statements): a contract both must keep."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select

from crisper import Crisper, JobState, SubmitRequest
from crisper.maintenance.lifeline import rescue
from crisper.states import INITIAL, NOTES, can_transition
from crisper.store import attempts as attempt_sql
from crisper.store import sweeps as sweep_sql
from crisper.store import utcnow
from crisper.store.models import job_events
from tests.harness import Backend

S = JobState


def claim(app: Crisper, job_id: uuid.UUID, lease: float = 60.0) -> attempt_sql.Claimed:
    with app.store.transaction() as session:
        (claimed,) = attempt_sql.claim(session, [job_id], "w1", "t1", lease, utcnow())
    return claimed


def end(app: Crisper, job: attempt_sql.Claimed, target: JobState, reason: str) -> None:
    error = None if target is S.SUCCEEDED else {"type": "E", "message": "boom"}
    retry_at = utcnow() - timedelta(seconds=1) if target is S.RETRYING else None
    with app.store.transaction() as session:
        assert attempt_sql.finish(session, job.id, job.lease_token, target, utcnow(),
                                  reason=reason, worker="w1", error=error, retry_at=retry_at)


def trail(app: Crisper, job_id: uuid.UUID) -> list[tuple[str | None, str | None, str]]:
    return [(e.from_state, e.to_state, e.reason) for e in app.jobs.events(job_id)]


def run_scenario(app: Crisper) -> dict[str, uuid.UUID]:
    """Submit, claim, succeed, fail and retry, cancel waiting and running jobs, a lost worker,
    a workflow whose failed node skips the rest, a cancelled workflow and a batch."""
    jobs = {}
    jobs["ok"] = app.submit("probe.noop").id
    end(app, claim(app, jobs["ok"]), S.SUCCEEDED, "succeeded")

    jobs["flaky"] = app.submit("probe.flaky", {"fail_times": 5}, max_attempts=2).id
    end(app, claim(app, jobs["flaky"]), S.RETRYING, "error")
    with app.store.transaction() as session:
        assert sweep_sql.promote_due(session, utcnow(), 100) >= 1
    end(app, claim(app, jobs["flaky"]), S.FAILED, "error")
    app.jobs.retry(jobs["flaky"])  # failed -> queued, a new series of attempts

    jobs["held"] = app.submit("probe.noop", hold=True).id
    app.jobs.start(jobs["held"])
    app.jobs.cancel(jobs["held"])  # queued -> cancelled
    jobs["later"] = app.submit("probe.noop", delay="1h").id
    app.jobs.cancel(jobs["later"])  # scheduled -> cancelled

    jobs["stopped"] = app.submit("probe.noop").id
    running = claim(app, jobs["stopped"])
    app.jobs.cancel(jobs["stopped"])  # a note: it stays running
    end(app, running, S.CANCELLED, "cancelled")

    jobs["lost"] = app.submit("probe.noop").id
    claim(app, jobs["lost"], lease=0.001)
    later = utcnow() + timedelta(seconds=5)
    assert rescue(app.store, app.settings, later) == 1  # lost: queued again, unspent
    claim(app, jobs["lost"], lease=0.001)
    app.jobs.cancel(jobs["lost"])
    later = utcnow() + timedelta(seconds=5)
    assert rescue(app.store, app.settings, later) == 1  # asked to cancel: ends cancelled

    wf = app.workflow("skips", on_failure="skip")
    a = wf.add("probe.noop", name="a")
    bad = wf.add("probe.noop", name="bad", after=a)
    wf.add("probe.noop", name="tail", after=bad)
    flow = app.workflows.get(wf.submit().id)
    end(app, claim(app, flow.node("a").id), S.SUCCEEDED, "succeeded")
    end(app, claim(app, flow.node("bad").id), S.FAILED, "error")
    jobs.update({"wf_a": flow.node("a").id, "wf_bad": flow.node("bad").id,
                 "wf_tail": flow.node("tail").id})

    wf = app.workflow("cancelled")
    first = wf.add("probe.noop", name="first")
    wf.add("probe.noop", name="second", after=first)
    flow = app.workflows.get(wf.submit().id)
    claim(app, flow.node("first").id)
    app.workflows.cancel(flow.id)  # the running node is asked, the waiting one cancelled
    jobs.update({"wf_first": flow.node("first").id, "wf_second": flow.node("second").id})

    batch = app.batches.submit([SubmitRequest("probe.noop"), SubmitRequest("probe.noop")])
    done, rest = app.batches.jobs(batch.id)[::-1][:2]
    end(app, claim(app, done.id), S.SUCCEEDED, "succeeded")
    app.batches.cancel(batch.id)
    jobs.update({"batch_done": done.id, "batch_rest": rest.id})
    return jobs


EXPECTED = {
    "ok": [(None, "queued", "submitted"), ("queued", "running", "claimed"),
           ("running", "succeeded", "succeeded")],
    "flaky": [(None, "queued", "submitted"), ("queued", "running", "claimed"),
              ("running", "retrying", "error"), ("retrying", "queued", "retry_due"),
              ("queued", "running", "claimed"), ("running", "failed", "error"),
              ("failed", "queued", "retried")],
    "held": [(None, "held", "submitted"), ("held", "queued", "started"),
             ("queued", "cancelled", "cancelled")],
    "later": [(None, "scheduled", "submitted"), ("scheduled", "cancelled", "cancelled")],
    "stopped": [(None, "queued", "submitted"), ("queued", "running", "claimed"),
                (None, None, "cancel_requested"), ("running", "cancelled", "cancelled")],
    "lost": [(None, "queued", "submitted"), ("queued", "running", "claimed"),
             ("running", "queued", "worker_lost"), ("queued", "running", "claimed"),
             (None, None, "cancel_requested"), ("running", "cancelled", "worker_lost")],
    "wf_a": [(None, "queued", "submitted"), ("queued", "running", "claimed"),
             ("running", "succeeded", "succeeded")],
    "wf_bad": [(None, "waiting", "submitted"), ("waiting", "queued", "parents_done"),
               ("queued", "running", "claimed"), ("running", "failed", "error")],
    "wf_tail": [(None, "waiting", "submitted"), ("waiting", "skipped", "parent_failed")],
    "wf_first": [(None, "queued", "submitted"), ("queued", "running", "claimed"),
                 (None, None, "cancel_requested")],
    "wf_second": [(None, "waiting", "submitted"), ("waiting", "cancelled", "workflow_cancelled")],
    "batch_done": [(None, "queued", "submitted"), ("queued", "running", "claimed"),
                   ("running", "succeeded", "succeeded")],
    "batch_rest": [(None, "queued", "submitted"), ("queued", "cancelled", "cancelled")],
}


def test_every_stored_event_is_a_move_the_table_allows_or_a_note(backend: Backend) -> None:
    app = backend.app_with(queues=["default"])
    jobs = run_scenario(app)

    # Every event row in the store, not only those of the jobs above
    with app.store.read() as session:
        rows = session.execute(select(job_events.c.from_state, job_events.c.to_state,
                                      job_events.c.reason)).all()
    assert len(rows) >= sum(len(t) for t in EXPECTED.values())
    for source, target, reason in rows:
        if target is None:
            assert source is None and reason in NOTES, (source, target, reason)
        elif source is None:
            assert S(target) in INITIAL, (target, reason)
        else:
            assert can_transition(S(source), S(target)), (source, target, reason)

    # And each job's history is the same on every store: the contract of the store's moves
    assert {name: trail(app, job_id) for name, job_id in jobs.items()} == EXPECTED
