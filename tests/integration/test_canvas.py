"""Celery's canvas on Crisper job types, through real workers (PostgreSQL + Redis): each form
gives Celery's answer, and is stored as one workflow, read back here node by node and edge by
edge. The Celery app has no result backend: results, chords included, come from the store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery, chain, chord, group

from crisper import Crisper
from crisper.adoption.canvas import CanvasGroupResult, CanvasResult
from crisper.workflow_service import WorkflowView
from tests.apps import graph
from tests.apps.canvas_app import build
from tests.harness import Backend

pytestmark = pytest.mark.backends("postgres-redis")
APP = {"CRISPER_APP": "tests.apps.canvas_app"}


@pytest.fixture
def proj(backend: Backend) -> Iterator[tuple[Celery, Crisper]]:
    """The test process's copy of the wrapped app (it submits), and one worker."""
    app, crisper = build(backend.settings)
    backend.start_worker(concurrency=4, **APP)
    try:
        yield app, crisper
    finally:
        crisper.observer.disconnect()
        crisper.store.close()


def t(crisper: Crisper, name: str) -> Any:
    return crisper.registry.get(name)


def stored(crisper: Crisper, result: Any) -> WorkflowView:
    return crisper.workflows.get(result.workflow_id)


def edges(view: WorkflowView) -> list[tuple[str, str, bool]]:
    """(parent, child, receives), each child's in position order."""
    return [(e.parent, e.child, e.receives) for e in view.edges]


def test_a_chain_and_the_pipe_pass_each_result_on_as_the_first_argument(
        proj: tuple[Celery, Crisper]) -> None:
    _, crisper = proj
    add, mul = t(crisper, "cv.add"), t(crisper, "cv.mul")

    res = chain(add.s(2, 2), add.s(4), mul.s(8)).apply_async()
    assert isinstance(res, CanvasResult)
    assert res.get(timeout=60) == 64  # ((2 + 2) + 4) * 8
    assert res.parent.get(timeout=10) == 8 and res.parent.parent.get(timeout=10) == 4
    view = stored(crisper, res)
    assert view.status == "succeeded" and view.counts == {"succeeded": 3}
    assert str(view.node("cv.mul").id) == res.id  # the chain's id: its last node's job
    assert {n.node: (n.type, n.params) for n in view.nodes} == {
        "cv.add": ("cv.add", {"x": 2, "y": 2}), "cv.add#2": ("cv.add", {"y": 4}),
        "cv.mul": ("cv.mul", {"y": 8})}
    assert edges(view) == [("cv.add", "cv.add#2", True), ("cv.add#2", "cv.mul", True)]

    piped = (add.s(1, 1) | add.s(10) | add.si(100, 100)).delay()  # .si: receives nothing
    assert piped.get(timeout=60) == 200
    assert piped.parent.get(timeout=10) == 12
    assert edges(stored(crisper, piped)) == [("cv.add", "cv.add#2", True),
                                             ("cv.add#2", "cv.add#3", False)]
    assert (add.s(5) | mul.s(3))(1).get(timeout=60) == 18  # partial args go to the first


def test_a_group_answers_its_results_in_order(proj: tuple[Celery, Crisper]) -> None:
    _, crisper = proj
    add = t(crisper, "cv.add")
    res = group(add.s(i, i) for i in range(6))()
    assert isinstance(res, CanvasGroupResult)
    assert res.get(timeout=60) == [0, 2, 4, 6, 8, 10]
    assert res.id == str(res.workflow_id)
    view = stored(crisper, res)
    assert view.counts == {"succeeded": 6} and view.edges == []
    assert [r.id for r in res.results] == [str(view.node(n).id) for n in
                                           ["cv.add", *(f"cv.add#{i}" for i in range(2, 7))]]


def test_a_chord_with_no_result_backend_gets_the_header_results_in_order(
        proj: tuple[Celery, Crisper]) -> None:
    app, crisper = proj
    assert not app.conf.result_backend
    add, echo, tsum = t(crisper, "cv.add"), t(crisper, "cv.echo"), t(crisper, "cv.tsum")
    res = chord([add.s(3, 0), add.s(1, 0), add.s(2, 0)], echo.s(tag="cb")).apply_async()
    assert res.get(timeout=60) == {"value": [3, 1, 2], "tag": "cb"}
    view = stored(crisper, res)
    assert res.id == str(view.node("cv.echo").id)  # a chord's id: its fan-in job's
    assert res.parent.get(timeout=10) == [3, 1, 2]
    assert edges(view) == [("cv.add", "cv.echo", True), ("cv.add#2", "cv.echo", True),
                           ("cv.add#3", "cv.echo", True)]
    assert view.node("cv.echo").params == {"tag": "cb"}
    assert crisper.jobs.get(res.id).metadata == {"workflow.deliver": "list"}
    trail = [e.reason for e in crisper.jobs.events(view.node("cv.echo").id)]
    assert trail[:2] == ["submitted", "parents_done"]  # released by its last parent, no unlock

    piped = (group(add.s(i, 1) for i in range(4)) | tsum.s()).delay()  # group | task: a chord
    assert piped.get(timeout=60) == 10
    immutable = chord([add.s(1, 1), add.s(2, 2)], echo.si("alone"))()
    assert immutable.get(timeout=60) == {"value": "alone", "tag": ""}
    assert {r for _, _, r in edges(stored(crisper, immutable))} == {False}


def test_a_chain_ending_in_a_chord_and_a_group_of_chains_mix_both_kinds_of_type(
        proj: tuple[Celery, Crisper]) -> None:
    _, crisper = proj
    add, mul, tsum = t(crisper, "cv.add"), t(crisper, "cv.mul"), t(crisper, "cv.tsum")
    double = t(crisper, "cv.double")  # ctx-first: a Crisper job type, not a moved task

    res = chain(add.s(1, 1), chord([mul.s(10), double.s()], tsum.s())).apply_async()
    assert res.get(timeout=60) == 24  # 2*10 + 2*2
    view = stored(crisper, res)
    assert sorted(edges(view)) == [("cv.add", "cv.double", True), ("cv.add", "cv.mul", True),
                                   ("cv.double", "cv.tsum", True), ("cv.mul", "cv.tsum", True)]
    assert view.node("cv.tsum").params == {} and view.node("cv.double").params == {}

    branches = group(add.s(1, 1) | double.s(), double.s(5) | add.s(1))()
    assert branches.get(timeout=60) == [4, 11]
    assert sorted(edges(stored(crisper, branches))) == [("cv.add", "cv.double", True),
                                                        ("cv.double#2", "cv.add#2", True)]


def test_a_failed_step_fails_what_follows_and_get_raises_its_error(
        proj: tuple[Celery, Crisper]) -> None:
    _, crisper = proj
    add, boom = t(crisper, "cv.add"), t(crisper, "cv.boom")
    res = chain(add.s(1, 1), boom.s(), add.s(1)).apply_async()
    with pytest.raises(ValueError, match="boom on 2"):
        res.get(timeout=60)  # Celery's rule: a failed parent's error is raised
    view = crisper.workflows.wait(res.workflow_id, timeout=60)
    assert view.status == "failed"
    assert view.node("cv.add#2").error["type"] == "ParentFailed"
    assert res.state == "FAILURE"

    header_fails = chord([add.s(1, 1), boom.s(7)], t(crisper, "cv.tsum").s())()
    with pytest.raises(ValueError, match="boom on 7"):
        header_fails.get(timeout=60)  # as Celery: the header's error, not the callback's


def test_canvas_on_a_plain_crisper_app_of_ctx_first_types(backend: Backend) -> None:
    app = graph.build(backend.settings)
    try:
        backend.start_worker(CRISPER_APP="tests.apps.graph")
        square = app.registry.get("graph.square")
        res = (square.s(2) | square.s() | square.s()).apply_async()
        assert res.get(timeout=60) == 256
        fan = group(square.s(n) for n in range(4)).delay()
        assert fan.get(timeout=60) == [0, 1, 4, 9]
        one = square.s(7).delay()  # one signature: one job, no workflow
        assert one.get(timeout=60) == 49
        assert app.jobs.get(one.id).workflow_id is None
        assert [n.params for n in app.workflows.get(res.workflow_id).nodes] == [
            {"n": 2, "fail": False, "seconds": 0.0}, {"fail": False, "seconds": 0.0},
            {"fail": False, "seconds": 0.0}]
    finally:
        app.store.close()
