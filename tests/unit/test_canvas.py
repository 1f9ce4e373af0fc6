"""Celery's canvas → a Crisper workflow, the pure translation (crisper/canvas.py), and what is
refused, each refusal naming what to use instead. Runs on real workers: tests/integration/
test_canvas.py."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
from celery import Celery, chain, chord, chunks, group, xmap, xstarmap
from celery.canvas import Signature

from crisper import Crisper, Settings
from crisper.adoption.canvas import _leaf, owner
from crisper.canvas import Leaf, Many, One, outputs, translate
from crisper.errors import InvalidParams, InvalidRequest
from crisper.workflows import Workflow

TYPES = {"add": ("x", "y"), "tsum": ("numbers",), "noop": ()}


def resolve(sig: Signature) -> Leaf | None:
    found = TYPES.get(sig.task)
    return None if found is None else Leaf(sig.task, found)


def s(name: str, *args: Any, **kwargs: Any) -> Signature:
    return Signature(name, args, kwargs)


def si(name: str, *args: Any, **kwargs: Any) -> Signature:
    return Signature(name, args, kwargs, immutable=True)


def graph(sig: Any, *args: Any) -> tuple[dict[str, Any], list[tuple[str, str, bool]], Any]:
    """(node -> (params, deliver), [(parent, child, receives)], result shape)."""
    plan = translate(sig, resolve, args)
    wf = plan.workflow
    nodes = {n.name: (n.params, n.deliver) for n in wf.nodes.values()}
    return nodes, [(e.parent, e.child, e.receives) for e in wf.edges.values()], plan.result


def test_a_chain_passes_each_result_as_the_first_argument_and_si_receives_nothing() -> None:
    nodes, edges, shape = graph(s("add", 2, 2) | s("add", 4) | si("add", 1, 1))
    assert nodes == {"add": ({"x": 2, "y": 2}, None), "add#2": ({"y": 4}, "result"),
                     "add#3": ({"x": 1, "y": 1}, None)}
    assert edges == [("add", "add#2", True), ("add#2", "add#3", False)]
    assert shape == One("add#3", One("add#2", One("add")))
    assert graph(chain(s("add", 2, 2), s("add", 4)))[:2] == graph(s("add", 2, 2) | s("add", 4))[:2]


def test_a_group_is_independent_nodes_and_a_chord_a_fan_in_receiving_the_list_in_order() -> None:
    nodes, edges, shape = graph(group(s("add", i, i) for i in range(3)))
    assert edges == [] and isinstance(shape, Many) and outputs(shape) == ("add", "add#2", "add#3")

    nodes, edges, shape = graph(chord([s("add", 3, 0), s("add", 1, 0)], s("tsum")))
    assert nodes["tsum"] == ({}, "list")
    assert edges == [("add", "tsum", True), ("add#2", "tsum", True)]  # header order
    assert shape == One("tsum", Many((One("add"), One("add#2"))))
    piped = graph(group(s("add", 3, 0), s("add", 1, 0)) | s("tsum"))
    assert piped[:2] == (nodes, edges)
    _, edges, _ = graph(chord([s("add", 1, 1)], si("noop")))
    assert edges == [("add", "noop", False)]


def test_a_chain_into_a_chord_and_a_group_of_chains() -> None:
    nodes, edges, shape = graph(chain(s("add", 1, 1), group(s("add", 1), s("add", 2)),
                                      s("tsum")))
    assert edges == [("add", "add#2", True), ("add", "add#3", True),
                     ("add#2", "tsum", True), ("add#3", "tsum", True)]
    assert nodes["add#2"] == ({"y": 1}, "result") and nodes["tsum"] == ({}, "list")
    assert isinstance(shape, One) and shape.node == "tsum"

    nodes, edges, shape = graph(group(s("add", 1, 1) | s("add", 1), s("add", 2, 2) | s("tsum")))
    assert edges == [("add", "add#2", True), ("add#3", "tsum", True)]
    assert nodes["tsum"] == ({}, "result")  # after one node: its result, not a list
    assert isinstance(shape, Many) and outputs(shape) == ("add#2", "tsum")


def test_a_chord_body_chain_and_a_group_body() -> None:
    _, edges, shape = graph(chord([s("add", 1, 1), s("add", 2, 2)], s("tsum") | s("add", 1)))
    assert edges[-1] == ("tsum", "add#3", True) and shape.node == "add#3"
    nodes, edges, shape = graph(chord([s("add", 1, 1)], group(s("tsum"), s("tsum"))))
    assert nodes["tsum"][1] == nodes["tsum#2"][1] == "list" and isinstance(shape, Many)


def test_partial_args_go_to_the_first_steps_unless_immutable() -> None:
    nodes, _, _ = graph(s("add", 2) | s("add", 4), 10)
    assert nodes["add"] == ({"x": 10, "y": 2}, None)
    nodes, _, _ = graph(group(s("add", 1), si("add", 5, 5)), 7)
    assert nodes == {"add": ({"x": 7, "y": 1}, None), "add#2": ({"x": 5, "y": 5}, None)}


def test_queue_and_priority_are_kept_per_signature() -> None:
    plan = translate(s("add", 1, 1).set(queue="fast", priority=3) | s("add", 2), resolve)
    node = plan.workflow.nodes["add"]
    assert (node.queue, node.priority) == ("fast", 3)
    assert plan.workflow.nodes["add#2"].queue is None


@pytest.mark.parametrize(("canvas", "says"), [
    (lambda: chunks(s("add"), [(1, 1)] * 4, 2), "group(task.s(*args)"),
    (lambda: xmap(s("add"), [1, 2]), "group(task.s(item)"),
    (lambda: xstarmap(s("add"), [(1, 2)]), "group(task.s(*args)"),
    (lambda: s("add", 1, 1).set(link=s("add", 2)) | s("add"), "chain the next step"),
    (lambda: s("add", 1, 1).set(link_error=s("noop")) | s("add"), "on_failure policy"),
    (lambda: s("add", 1, 1).set(countdown=5) | s("add"), "submit the canvas later"),
    (lambda: s("add", 1, 1).set(expires=5) | s("add"), "cancel the workflow"),
    (lambda: s("add", 1, 1).set(retries=5) | s("add"), "queue= and priority="),
    (lambda: group(group(s("add", 1, 1), s("add", 2, 2)), s("add", 3, 3)), "one group"),
    (lambda: group([]), "an empty group"),
    (lambda: group(s("add", 1, 1), s("add", 2, 2), queue="x"), "on each signature"),
    (lambda: s("add", 1, 1) | s("plain.task"), "not a Crisper job type"),
    (lambda: s("add", 1, 1) | s("add", 1, 2), "1 more argument(s) besides the result"),
    (lambda: s("add", 1, 1) | s("add", x=3), "'x' gets the result before it"),
    (lambda: s("add", 1, 1) | s("noop"), "use .si()"),
])
def test_what_canvas_cannot_be_is_refused_naming_what_to_use(canvas: Any, says: str) -> None:
    with pytest.raises(InvalidRequest, match="canvas") as caught:
        translate(canvas(), resolve)
    assert says in str(caught.value)


def test_a_delivering_node_must_receive_one_result_and_its_first_param_comes_later(
        tmp_path: Path) -> None:
    wf = Workflow("w")
    wf.add("t", name="a")
    wf.add("t", name="b")
    wf.add("t", name="c", after=["a", "b"], receive=True, deliver="result")
    with pytest.raises(InvalidRequest, match="use \"list\""):
        wf.check_deliveries()
    with pytest.raises(InvalidRequest, match="deliver"):
        Workflow("w").add("t", deliver="all")  # type: ignore[arg-type]
    spec = Workflow.from_spec({"name": "w", "nodes": [
        {"name": "a", "type": "t"}, {"name": "b", "type": "t", "after": ["a"], "receive": True,
                                     "deliver": "result"}]})
    spec.check_deliveries()
    assert spec.nodes["b"].deliver == "result"

    crisper = Crisper("p", settings=Settings(database_url=f"sqlite:///{tmp_path / 'c.db'}"))

    @crisper.job(name="p.add")
    def add(ctx: Any, x: int, y: int = 0) -> int:
        return x + y

    job_type = crisper.registry.get("p.add")
    assert job_type.parameters() == ["x", "y"]
    assert job_type.validate({"y": 2}, given_later=True) == {"y": 2}
    with pytest.raises(InvalidParams):
        job_type.validate({"x": 1}, given_later=True)  # the first comes from the parent
    with pytest.raises(InvalidParams):
        job_type.validate({"y": 2})


def wrapped(tmp_path: Path) -> tuple[Celery, Crisper]:
    app = Celery("proj", broker="redis://127.0.0.1:6379/0", set_as_current=False)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'c.db'}", observe=False)
    return app, Crisper("proj", settings=settings, celery=app)


def test_which_canvases_are_crispers_and_plain_ones_run_as_celery_runs_them(
        tmp_path: Path) -> None:
    app, crisper = wrapped(tmp_path)

    @crisper.job(name="proj.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="proj.plain", shared=False)
    def plain(x: int, y: int) -> int:
        return x + y

    moved = crisper.registry.get("proj.add")
    assert owner(moved.s(1, 1) | moved.s(2)) is crisper.celery_port
    assert owner(app.signature("proj.add", (1, 1)) | moved.s(1)) is crisper.celery_port  # name
    assert owner(app.tasks["proj.add"].s(1) | moved.s(1)) is crisper.celery_port  # its task
    assert owner(plain.s(1, 1) | plain.s(2)) is None
    with pytest.raises(InvalidRequest, match="'proj.plain' is not a Crisper job type"):
        (moved.s(1, 1) | plain.s(2)).apply_async()
    with pytest.raises(InvalidRequest, match="on each signature"):
        (moved.s(1, 1) | moved.s(2)).apply_async(queue="elsewhere")
    with pytest.raises(InvalidRequest, match="chain"):
        moved.s(1, 1).apply_async(link=moved.s(2))

    plan = translate(moved.s(1, 1).set(priority=0) | moved.s(2).set(priority=9),
                     functools.partial(_leaf, crisper.celery_port))
    assert [n.priority for n in plan.workflow.nodes.values()] == [255, 0]  # Redis: 0 first

    app.conf.task_always_eager = True  # a plain canvas: Celery's own code, untouched
    assert chain(plain.s(1, 1), plain.s(2)).apply_async().get() == 4
    assert group(plain.s(1, 1), plain.s(2, 2))().get() == [2, 4]


def test_canvases_run_in_testing_mode_with_celerys_answers(tmp_path: Path) -> None:
    from crisper.testing import run_inline

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'c.db'}",
                        broker_url="redis://127.0.0.1:1")  # never used: jobs run inline
    crisper = Crisper("inline", settings=settings)

    @crisper.job(name="in.add")
    def add(ctx: Any, x: int, y: int) -> int:
        return x + y

    @crisper.job(name="in.listed")
    def listed(ctx: Any, values: list[int], tag: str = "") -> dict[str, Any]:
        return {"values": values, "tag": tag}

    crisper.store.create_all()
    add_t, listed_t = crisper.registry.get("in.add"), crisper.registry.get("in.listed")
    with run_inline(crisper):
        res = chain(add_t.s(1, 1), chord([add_t.s(10), add_t.s(1)], listed_t.s(tag="t")))()
        assert res.get(timeout=5) == {"values": [12, 3], "tag": "t"}
        assert res.parent.get(timeout=5) == [12, 3]
        view = crisper.workflows.get(res.workflow_id)
        assert view.node("in.listed").params == {"tag": "t"}
        assert (add_t.s(2, 3) | add_t.si(0, 1))().get(timeout=5) == 1
