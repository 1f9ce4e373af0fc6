"""The pure parts of workflows: the builder, graph order, failure effects, status, layout."""

from __future__ import annotations

import pytest

from crisper.dashboard.graph import layout
from crisper.errors import InvalidRequest
from crisper.states import JobState
from crisper.store.workflows import _effect
from crisper.workflows import Edge, Workflow, downstream, status, topological

S = JobState


def test_the_builder_names_nodes_and_records_edges_with_their_policy() -> None:
    wf = Workflow("w", on_failure="skip")
    a = wf.add("t", {"x": 1})
    b = wf.add("t", after=a, receive=True)
    fan = wf.map("u", [{"i": i} for i in range(3)], after=[a, b], receive=[b],
                 on_failure="run")
    wf.depend(fan[0], "t", on_failure="fail")

    assert [a.name, b.name] == ["t", "t#2"]
    assert [n.name for n in fan] == ["u[0]", "u[1]", "u[2]"]
    assert wf.edges[("t", "t#2")] == Edge("t", "t#2", "skip", True)
    assert wf.edges[("t#2", "u[1]")] == Edge("t#2", "u[1]", "run", True)
    assert wf.edges[("t", "u[1]")] == Edge("t", "u[1]", "run", False)
    assert wf.edges[("t", "u[0]")].policy == "fail"
    order = wf.order()
    assert order.index("t") < order.index("t#2") < order.index("u[0]")


@pytest.mark.parametrize(("build", "message"), [
    (lambda wf: wf.add("t", after="nope"), "no node named 'nope'"),
    (lambda wf: wf.add("t", on_failure="maybe", after=wf.add("t")), "must be one of"),
    (lambda wf: wf.add("t", receive=["x"], after=wf.add("t", name="y")), "not parents"),
    (lambda wf: wf.depend(wf.add("t"), "t"), "cannot wait for itself"),
])
def test_a_wrong_graph_is_refused_with_a_sentence(build: object, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        build(Workflow("w"))  # type: ignore[operator]


def test_a_cycle_is_refused_naming_its_nodes() -> None:
    edges = [Edge("a", "b"), Edge("b", "c"), Edge("c", "b")]
    with pytest.raises(InvalidRequest, match=r"cycle through \['b', 'c'\]"):
        topological(["a", "b", "c"], edges)


def test_the_json_form_builds_the_same_graph() -> None:
    wf = Workflow.from_spec({"name": "j", "on_failure": "fail", "nodes": [
        {"name": "a", "type": "t"},
        {"name": "b", "type": "t", "after": ["a"], "receive": True},
        {"name": "c", "type": "t", "after": [{"node": "a", "on_failure": "skip"}, "b"],
         "receive": ["b"]},
    ]})
    assert wf.edges[("a", "b")] == Edge("a", "b", "fail", True)
    assert wf.edges[("a", "c")] == Edge("a", "c", "skip", False)
    assert wf.edges[("b", "c")] == Edge("b", "c", "fail", True)


@pytest.mark.parametrize(("parent", "policy", "effect"), [
    (S.SUCCEEDED, "fail", S.QUEUED),
    (S.SUCCEEDED, "skip", S.QUEUED),
    (S.FAILED, "fail", S.FAILED),
    (S.FAILED, "run", S.QUEUED),
    (S.FAILED, "skip", S.SKIPPED),
    (S.CANCELLED, "fail", S.CANCELLED),
    (S.SKIPPED, "fail", S.SKIPPED),
    (S.SKIPPED, "run", S.QUEUED),
])
def test_what_a_parents_end_does_to_a_waiting_child(parent: JobState, policy: str,
                                                   effect: JobState) -> None:
    assert _effect(parent, policy) is effect


@pytest.mark.parametrize(("counts", "asked", "expected"), [
    ({"succeeded": 3, "waiting": 1}, False, "running"),
    ({"running": 1, "cancelled": 2}, True, "cancelling"),
    ({"succeeded": 2, "skipped": 1, "failed": 1}, False, "failed"),
    ({"succeeded": 2, "cancelled": 1}, True, "cancelled"),
    ({"succeeded": 2}, False, "succeeded"),
])
def test_a_workflows_status_is_summarised_from_its_nodes(counts: dict[str, int], asked: bool,
                                                         expected: str) -> None:
    assert status(counts, asked) == expected


def test_downstream_reaches_every_descendant_once() -> None:
    children = {"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": []}
    assert downstream(["b"], children) == {"b", "d"}
    assert downstream(["a"], children) == {"a", "b", "c", "d"}


def test_the_layout_puts_each_node_below_its_deepest_parent_and_wraps_wide_layers() -> None:
    names = ["r", *(f"f{i}" for i in range(25)), "j"]
    edges = [("r", f"f{i}") for i in range(25)] + [(f"f{i}", "j") for i in range(25)]
    edges.append(("r", "j"))
    drawn = layout(names, edges)
    b = drawn.boxes
    assert b["r"].y < b["f0"].y < b["f20"].y < b["j"].y  # f20 wraps onto a second row
    assert b["f0"].y == b["f19"].y and b["f0"].x == b["f20"].x
    assert drawn.height > b["j"].y and drawn.width >= b["f19"].x
