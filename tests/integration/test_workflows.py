"""Workflows through real workers: a DAG runs once per node, failure policies, resume, cancel,
and a worker killed mid-workflow (PostgreSQL + Redis)."""

from __future__ import annotations

import collections
import signal
from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from crisper import Crisper, JobState, WorkflowBusy, WorkflowNotFound
from tests.apps import graph
from tests.harness import Backend, wait_for

S = JobState
pytestmark = pytest.mark.backends("postgres-redis")
APP = {"CRISPER_APP": "tests.apps.graph"}


@pytest.fixture
def app(backend: Backend) -> Iterator[Crisper]:
    crisper = graph.build(backend.settings)
    yield crisper
    crisper.store.close()


def runs(backend: Backend) -> collections.Counter[str]:
    """How many times each job's body started, from the probe files."""
    return collections.Counter(r.job_id for r in backend.probe_rows() if r.event == "start")


def test_a_three_level_dag_runs_each_node_once_and_the_fan_in_sees_every_result(
        backend: Backend, app: Crisper) -> None:
    backend.start_worker(concurrency=4, **APP)
    wf = app.workflow("dag")
    root = wf.add("graph.square", {"n": 1}, name="root")
    fan = wf.map("graph.square", [{"n": i} for i in range(100)], name="sq", after=root)
    wf.add("graph.join", name="join", after=fan, receive=True)

    submitted = wf.submit()
    assert submitted.counts == {"queued": 1, "waiting": 101}
    done = app.workflows.wait(submitted.id, timeout=240)

    assert done.status == "succeeded", done.counts
    assert done.counts == {"succeeded": 102}
    ran = runs(backend)
    assert {str(n.id) for n in done.nodes} == set(ran)
    assert set(ran.values()) == {1}
    joined = app.jobs.get(done.node("join").id).result
    assert joined["count"] == 100
    assert joined["sum"] == sum(i * i for i in range(100))
    assert joined["parents"] == sorted(f"sq[{i}]" for i in range(100))
    # the fan-in was queued by the event that recorded its last parent's success
    trail = [(e.from_state, e.to_state, e.reason) for e in app.jobs.events(done.node("join").id)]
    assert trail[:2] == [(None, "waiting", "submitted"), ("waiting", "queued", "parents_done")]


def _branchy(app: Crisper, policy: str) -> tuple[object, str]:
    """a -> (bad, good) -> end; bad fails; `end` waits for both under `policy`."""
    wf = app.workflow(f"policy-{policy}", on_failure=policy)  # type: ignore[arg-type]
    a = wf.add("graph.square", {"n": 2}, name="a")
    bad = wf.add("graph.square", {"n": 3, "fail": True}, name="bad", after=a)
    good = wf.add("graph.square", {"n": 4}, name="good", after=a)
    end = wf.add("graph.join", name="end", after=[bad, good], receive=True)
    wf.add("graph.square", {"n": 5}, name="after_end", after=end)
    return wf.submit().id, "end"


@pytest.mark.parametrize(("policy", "end_state", "tail_state"), [
    ("fail", S.FAILED, S.FAILED),
    ("skip", S.SKIPPED, S.SKIPPED),
    ("run", S.SUCCEEDED, S.SUCCEEDED),
])
def test_a_failed_branch_acts_on_its_dependents_by_policy(
        backend: Backend, app: Crisper, policy: str, end_state: JobState,
        tail_state: JobState) -> None:
    backend.start_worker(**APP)
    wid, _ = _branchy(app, policy)

    done = app.workflows.wait(wid, timeout=120)

    states = {n.node: n.state for n in done.nodes}
    assert states == {"a": S.SUCCEEDED, "bad": S.FAILED, "good": S.SUCCEEDED,
                      "end": end_state, "after_end": tail_state}
    end = done.node("end")
    if policy == "fail":
        assert end.error is not None and "'bad'" in end.error["message"]
        assert end.error["type"] == "ParentFailed"
    if policy == "run":
        result = app.jobs.get(end.id).result
        assert result["parents"] == ["bad", "good"] and result["sum"] == 16  # bad gave None
    never = {str(done.node(n).id) for n in ("end", "after_end")} if policy != "run" else set()
    assert not never & set(runs(backend))
    assert done.status == "failed"


def test_retry_resumes_from_the_failed_node_and_keeps_what_succeeded(
        backend: Backend, app: Crisper) -> None:
    backend.start_worker(**APP)
    wid, _ = _branchy(app, "fail")
    failed = app.workflows.wait(wid, timeout=120)
    assert failed.status == "failed"
    kept = {n.node: n.id for n in failed.nodes if n.state is S.SUCCEEDED}
    assert set(kept) == {"a", "good"}

    # the failed node again with edited params: a replay with edit, and downstream reruns
    app.workflows.retry_node(wid, "bad", params={"n": 3, "fail": False})
    done = app.workflows.wait(wid, timeout=120)

    assert done.status == "succeeded", done.counts
    ran = runs(backend)
    assert all(ran[str(i)] == 1 for i in kept.values())  # not run again
    assert ran[str(done.node("bad").id)] == 2
    assert app.jobs.get(done.node("end").id).result["sum"] == 9 + 16
    edit = [e for e in app.jobs.events(done.node("bad").id) if e.reason == "retried_with_edit"]
    assert edit and edit[0].detail == {"edit": {
        "before": {"n": 3, "fail": True, "seconds": 0.0},
        "after": {"n": 3, "fail": False, "seconds": 0.0}}}
    with pytest.raises(WorkflowBusy, match="nothing to retry"):
        app.workflows.retry(wid)


def test_retrying_a_failed_workflow_reruns_failed_and_downstream_only(
        backend: Backend, app: Crisper) -> None:
    backend.start_worker(**APP)
    wf = app.workflow("resume")
    a = wf.add("graph.nap", {"seconds": 3}, name="a")
    b = wf.add("graph.square", {"n": 3}, name="b", after=a)
    wf.add("graph.join", name="c", after=b)
    wid = wf.submit().id
    # b is cancelled while it waits for a: c is cancelled with it (parent_cancelled)
    b_job = app.workflows.get(wid).node("b")
    assert b_job.state is S.WAITING
    app.jobs.cancel(b_job.id)
    first = app.workflows.wait(wid, timeout=120)
    assert {n.node: n.state for n in first.nodes} == {
        "a": S.SUCCEEDED, "b": S.CANCELLED, "c": S.CANCELLED}

    app.workflows.retry(wid)
    done = app.workflows.wait(wid, timeout=120)

    assert done.status == "succeeded"
    ran = runs(backend)
    assert ran[str(done.node("a").id)] == 1
    assert ran[str(done.node("b").id)] == 1 and ran[str(done.node("c").id)] == 1


def test_cancelling_a_running_workflow_stops_everything(backend: Backend, app: Crisper) -> None:
    backend.start_worker(concurrency=2, **APP)
    wf = app.workflow("cancel-me")
    naps = wf.map("graph.nap", [{"seconds": 60}] * 2, name="nap")
    mid = wf.add("graph.square", {"n": 1}, name="mid", after=naps)
    wf.add("graph.square", {"n": 2}, name="last", after=mid)
    wid = wf.submit().id
    wait_for(lambda: app.workflows.get(wid).counts.get("running") == 2, 60, "two naps running")

    app.workflows.cancel(wid)
    done = app.workflows.wait(wid, timeout=60)

    assert done.status == "cancelled"
    assert done.counts == {"cancelled": 4}
    never = {str(done.node(n).id) for n in ("mid", "last")}
    assert not never & set(runs(backend))


def test_cancelling_a_workflow_forces_a_node_that_never_checks(backend: Backend,
                                                                app: Crisper) -> None:
    backend.start_worker(concurrency=1, **APP)
    backend.start_scheduler(**APP)  # its canceller forces the stop after the grace period
    wf = app.workflow("deaf")
    wf.add("graph.square", {"n": 1}, name="after", after=wf.add("graph.deaf", name="deaf"),
           on_failure="run")
    wid = wf.submit().id
    wait_for(lambda: app.workflows.get(wid).counts.get("running") == 1, 60, "deaf running")

    app.workflows.cancel(wid)
    done = app.workflows.wait(wid, timeout=60)

    assert done.counts == {"cancelled": 2}
    deaf = done.node("deaf")
    assert "cancel_forced" in [e.reason for e in app.jobs.events(deaf.id)]
    assert not [r for r in backend.probe_rows() if r.event == "end"]  # killed mid-sleep
    assert str(done.node("after").id) not in runs(backend)


def test_a_worker_killed_mid_workflow_loses_no_node_and_none_succeeds_twice(
        backend: Backend, app: Crisper) -> None:
    victim = backend.start_worker(concurrency=4, **APP)
    backend.start_scheduler(**APP)
    wf = app.workflow("survive")
    root = wf.add("graph.square", {"n": 1}, name="root")
    fan = wf.map("graph.square", [{"n": i, "seconds": 0.5} for i in range(20)], name="sq",
                 after=root)
    wf.add("graph.join", name="join", after=fan, receive=True)
    wid = wf.submit().id
    wait_for(lambda: app.workflows.get(wid).counts.get("running", 0) >= 2, 60,
             "fan-out nodes running")

    victim.signal(signal.SIGKILL)
    backend.start_worker(concurrency=4, **APP)
    done = app.workflows.wait(wid, timeout=240)

    assert done.status == "succeeded", done.counts
    assert done.counts == {"succeeded": 22}
    assert app.jobs.get(done.node("join").id).result["count"] == 20
    for node in done.nodes:
        ended = [e for e in app.jobs.events(node.id) if e.to_state == "succeeded"]
        assert len(ended) == 1, node.node


def test_a_workflow_exists_if_and_only_if_the_callers_transaction_commits(
        backend: Backend, app: Crisper) -> None:
    def build(name: str) -> object:
        wf = app.workflow(name)
        wf.add("graph.join", name="join", after=wf.map("graph.square", [{"n": 2}, {"n": 3}]),
               receive=True)
        return wf

    with Session(app.store.engine) as session, session.begin():
        dropped = build("dropped").submit(session=session)  # type: ignore[attr-defined]
        session.rollback()
    with Session(app.store.engine) as session, session.begin():
        kept = build("kept").submit(session=session)  # type: ignore[attr-defined]

    with pytest.raises(WorkflowNotFound):
        app.workflows.get(dropped.id)
    backend.start_worker(**APP)
    done = app.workflows.wait(kept.id, timeout=120)
    assert done.status == "succeeded"
    assert app.jobs.get(done.node("join").id).result["sum"] == 13


@pytest.mark.backends("sqlite-embedded")
def test_the_embedded_default_runs_a_workflow_with_a_failure_policy(
        backend: Backend, app: Crisper) -> None:
    backend.start_worker(**APP)
    wid, _ = _branchy(app, "skip")

    done = app.workflows.wait(wid, timeout=120)

    assert {n.node: n.state for n in done.nodes} == {
        "a": S.SUCCEEDED, "bad": S.FAILED, "good": S.SUCCEEDED, "end": S.SKIPPED,
        "after_end": S.SKIPPED}


def test_an_async_session_stores_a_workflow_if_and_only_if_it_commits(
        backend: Backend, app: Crisper) -> None:
    import asyncio

    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    from crisper.contrib.fastapi import AsyncSubmitter
    from crisper.store.db import normalize_url

    async def submit_twice() -> tuple[object, object]:
        engine = create_async_engine(normalize_url(backend.env["CRISPER_DATABASE_URL"]))
        try:
            async with AsyncSession(engine) as session:
                wf = app.workflow("rolled-back")
                wf.add("graph.square", {"n": 1})
                dropped = await AsyncSubmitter(app, session).workflow(wf)
                await session.rollback()
            async with AsyncSession(engine) as session:
                wf = app.workflow("committed")
                wf.add("graph.square", {"n": 4}, name="b", after=wf.add("graph.square", {"n": 1}))
                kept = await AsyncSubmitter(app, session).workflow(wf)
                await session.commit()
        finally:
            await engine.dispose()
        return dropped.id, kept.id  # type: ignore[attr-defined]

    dropped, kept = asyncio.run(submit_twice())
    with pytest.raises(WorkflowNotFound):
        app.workflows.get(dropped)
    backend.start_worker(**APP)
    assert app.workflows.wait(kept, timeout=120).status == "succeeded"
