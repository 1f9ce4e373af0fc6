"""The state table decides every move the store makes: statically (each moving statement is
built from a Move the table allows) and at run time (each event's move is checked)."""

from __future__ import annotations

import ast
import importlib
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crisper.errors import InvalidTransition
from crisper.states import ACTIVE, INITIAL, NOT_STARTED, JobState, Move, move, sources
from crisper.store import statements
from crisper.store.jobs import check_initial

S = JobState
STORE = Path(statements.__file__).parent
MODULES = sorted(p.stem for p in STORE.glob("*.py") if p.stem != "__init__")
# Where a job's state may be written other than by statements.moving: the observed mirror
# (Celery decides those states) and other tables' own `state` columns (webhook deliveries).
WRITES_ELSEWHERE = {("statements", "moving"), ("observed", "upsert"),
                    ("deliveries", "*")}


def _declared_moves() -> list[tuple[str, Move]]:
    found = []
    for name in MODULES:
        module = importlib.import_module(f"crisper.store.{name}")
        for attr, value in vars(module).items():
            values = value.values() if isinstance(value, dict) else [value]
            found += [(f"{name}.{attr}", v) for v in values if isinstance(v, Move)]
    return found


def test_every_move_the_store_declares_is_in_the_table() -> None:
    moves = _declared_moves()
    names = {n for n, _ in moves}
    assert {"attempts.CLAIM", "attempts.OUTCOMES", "attempts.RESCUE", "sweeps.DUE",
            "flow.DEFER", "observed.LOST_WORKER", "workflows.PARENTS_DONE",
            "workflows.ENDED_BY_PARENT", "workflows.STOP"} <= names
    for name, m in moves:
        assert m.sources <= sources(m.target), name


def _state_writes(tree: ast.AST) -> list[tuple[str, int]]:
    """(function, line) of each `.values(state=…)` and each `{"state": …}` in a module."""
    writes = []
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr == "values" and any(k.arg == "state" for k in node.keywords):
                writes.append((func.name, node.lineno))
            if isinstance(node, ast.Dict) and any(
                    isinstance(k, ast.Constant) and k.value == "state" for k in node.keys):
                writes.append((func.name, node.lineno))
    return writes


def test_no_store_statement_writes_a_job_state_but_through_a_move() -> None:
    stray = []
    for name in MODULES:
        tree = ast.parse((STORE / f"{name}.py").read_text())
        for func, line in _state_writes(tree):
            if (name, func) not in WRITES_ELSEWHERE and (name, "*") not in WRITES_ELSEWHERE:
                stray.append(f"crisper/store/{name}.py:{line} in {func}()")
    assert not stray, f"state written outside statements.moving: {stray}"


def test_the_scan_finds_a_state_written_by_hand() -> None:
    tree = ast.parse("def f():\n    update(jobs).values(state='running')\n    x = {'state': 1}\n")
    assert _state_writes(tree) == [("f", 2), ("f", 3)]


def test_a_move_the_table_forbids_cannot_be_made() -> None:
    with pytest.raises(InvalidTransition):
        move(S.RUNNING, S.HELD)
    with pytest.raises(InvalidTransition):
        Move(frozenset({S.RUNNING}), S.RUNNING)  # what a cancel request used to be stored as
    assert move(S.CANCELLED).sources == ACTIVE  # no sources given: all the table allows


def test_moving_builds_its_where_from_the_sources() -> None:
    sql = str(statements.moving(move(S.QUEUED, S.SCHEDULED, S.RETRYING)).compile())
    assert "state IN (__[POSTCOMPILE_state_1])" in sql
    single = statements.moving(move(S.RUNNING, S.QUEUED)).compile()
    assert "state = :state_1" in str(single) and single.params["state_1"] == "queued"


AT = datetime(2030, 1, 1, tzinfo=UTC)


def test_every_event_row_checks_its_move() -> None:
    job = uuid.uuid4()
    assert statements.event(job, S.QUEUED, S.RUNNING, "claimed", AT, 1)["to_state"] == "running"
    with pytest.raises(InvalidTransition):
        statements.event(job, S.RUNNING, S.RUNNING, "cancel_requested", AT, 1)
    with pytest.raises(InvalidTransition):
        statements.event(job, None, S.RUNNING, "submitted", AT, 0)  # not a state to start in


def test_a_cancel_request_is_a_note_with_no_move() -> None:
    row = statements.note(uuid.uuid4(), "cancel_requested", AT, 2)
    assert (row["from_state"], row["to_state"], row["reason"]) == (None, None, "cancel_requested")
    with pytest.raises(ValueError):
        statements.note(uuid.uuid4(), "cancelled", AT, 2)  # a move, not a note


def test_jobs_are_created_only_in_an_initial_state() -> None:
    check_initial([{"state": s.value} for s in INITIAL])
    with pytest.raises(InvalidTransition):
        check_initial([{"state": "queued"}, {"state": "succeeded"}])


def test_not_started_is_not_the_waiting_state() -> None:
    assert S.WAITING not in NOT_STARTED and NOT_STARTED.issubset(ACTIVE - {S.RUNNING})
