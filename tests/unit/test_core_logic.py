"""Pure logic of the core, with parameter tables: states, retry decisions, durations, ids,
parameter schemas, and the public API."""

from __future__ import annotations

import random
import time
import uuid
from datetime import timedelta

import pytest

import crisper
from crisper import Crisper, InvalidParams, InvalidTransition, Retry
from crisper.durations import seconds
from crisper.errors import ConfigurationError, CrisperError, InvalidRequest, UnknownJobType
from crisper.ids import new_id, parse_id
from crisper.retry import decide, delay_for
from crisper.states import (
    ACTIVE,
    TERMINAL,
    JobState,
    action_sources,
    can_transition,
    check_action,
    sources,
    transition,
)

S = JobState


@pytest.mark.parametrize(("source", "target", "allowed"), [
    (S.HELD, S.QUEUED, True),
    (S.HELD, S.RUNNING, False),
    (S.SCHEDULED, S.QUEUED, True),
    (S.QUEUED, S.RUNNING, True),
    (S.QUEUED, S.SUCCEEDED, False),
    (S.RUNNING, S.SUCCEEDED, True),
    (S.RUNNING, S.RETRYING, True),
    (S.RUNNING, S.QUEUED, True),  # a rescue: the worker was lost, no attempt spent
    (S.RETRYING, S.QUEUED, True),
    (S.RETRYING, S.RUNNING, False),
    (S.SUCCEEDED, S.QUEUED, True),
    (S.SUCCEEDED, S.RUNNING, False),
    (S.FAILED, S.CANCELLED, False),
    (S.CANCELLED, S.CANCELLED, False),
])
def test_the_transition_table(source: JobState, target: JobState, allowed: bool) -> None:
    assert can_transition(source, target) is allowed
    if allowed:
        assert transition(source, target) is target
    else:
        with pytest.raises(InvalidTransition):
            transition(source, target)


def test_every_active_state_can_be_cancelled_and_no_terminal_one_can() -> None:
    assert sources(S.CANCELLED) == ACTIVE
    assert TERMINAL.isdisjoint(sources(S.CANCELLED))


def test_terminal_states_have_only_the_restart_ways_out() -> None:
    for state in TERMINAL:
        assert state.is_terminal
        # queued: a job retried; waiting: a workflow node resumed behind its rerun parents
        assert {t for t in S if can_transition(state, t)} == {S.QUEUED, S.WAITING}


@pytest.mark.parametrize(("action", "state", "message"), [
    ("started", S.SUCCEEDED, "is succeeded; only held jobs can be started"),
    ("retried", S.RUNNING,
     "is running; only cancelled or failed or skipped or succeeded jobs can be retried"),
    ("cancelled", S.FAILED, "is failed; only held or queued or retrying or running or scheduled"),
])
def test_a_refused_action_says_why(action: str, state: JobState, message: str) -> None:
    with pytest.raises(InvalidTransition, match=message):
        check_action("0193", state, action)
    assert state not in action_sources(action)


POLICY = Retry(attempts=4, backoff=10, max_backoff=60, jitter=False).to_json()


@pytest.mark.parametrize(("attempt", "expected"), [(1, 10.0), (2, 20.0), (3, 40.0), (4, 60.0),
                                                   (9, 60.0)])
def test_backoff_doubles_and_is_capped(attempt: int, expected: float) -> None:
    assert delay_for(attempt, POLICY) == expected


def test_jitter_stays_between_half_and_the_full_delay() -> None:
    policy = {**POLICY, "jitter": True}
    rng = random.Random(7)
    draws = [delay_for(3, policy, rng) for _ in range(500)]
    assert min(draws) >= 20.0 and max(draws) <= 40.0
    assert max(draws) - min(draws) > 10  # it really spreads


@pytest.mark.parametrize(("attempt", "error", "retry"), [
    (1, RuntimeError("x"), True),
    (3, RuntimeError("x"), True),
    (4, RuntimeError("x"), False),          # attempts exhausted
    (1, KeyError("x"), False),              # listed as never retried
    (1, KeyboardInterrupt(), False),        # not an Exception: not in retry_on
])
def test_the_retry_decision(attempt: int, error: BaseException, retry: bool) -> None:
    decision = decide(attempt, 4, POLICY, error, (Exception,), (KeyError,))
    assert decision.retry is retry
    assert decision.delay == (delay_for(attempt, POLICY) if retry else 0.0)


@pytest.mark.parametrize(("text", "expected"), [
    ("90s", 90.0), ("5m", 300.0), ("1h30m", 5400.0), ("2d", 172800.0), ("250ms", 0.25),
    ("12", 12.0), (3, 3.0), (2.5, 2.5), (timedelta(minutes=2), 120.0),
])
def test_durations(text: object, expected: float) -> None:
    assert seconds(text) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "5 minutes", "m5", "1h-", "-3", -1])
def test_bad_durations_say_what_would_do(bad: object) -> None:
    with pytest.raises(InvalidRequest, match="duration"):
        seconds(bad)  # type: ignore[arg-type]


def test_ids_are_uuid7_and_sort_by_creation_time() -> None:
    first = new_id()
    time.sleep(0.002)
    later = [new_id() for _ in range(100)]
    assert first.version == 7
    assert all(first < i for i in later)
    assert str(first) < min(str(i) for i in later)  # as text too (SQLite keys)
    assert parse_id(str(first)) == first
    assert parse_id("nope") is None and parse_id(uuid.UUID(int=5)) == uuid.UUID(int=5)


def test_a_signature_is_the_parameter_schema_and_errors_name_the_field() -> None:
    app = Crisper("t")

    @app.job(queue="imports", retry=3, timeout="1h")
    def import_products(ctx: object, path: str, dry_run: bool = False, limit: int = 10) -> None:
        """Import products."""

    schema = import_products.json_schema()
    assert schema["required"] == ["path"]
    assert set(schema["properties"]) == {"path", "dry_run", "limit"}
    assert import_products.validate({"path": "p.csv", "limit": "5"}) == {
        "path": "p.csv", "dry_run": False, "limit": 5}
    with pytest.raises(InvalidParams) as bad:
        import_products.validate({"path": "p.csv", "limit": "many", "colour": "red"})
    assert {tuple(e["loc"]) for e in bad.value.errors} == {("limit",), ("colour",)}
    with pytest.raises(InvalidParams, match="NUL"):
        import_products.validate({"path": "a\x00b"})
    assert import_products.options.retry.attempts == 3
    assert import_products.options.timeout == 3600.0


def test_job_type_definitions_are_checked_when_decorated() -> None:
    app = Crisper("t")
    with pytest.raises(ConfigurationError, match="reserved"):
        app.job(lambda ctx, queue: None)
    with pytest.raises(ConfigurationError, match=r"\*args"):
        app.job(name="v")(lambda ctx, *rest: None)
    with pytest.raises(ConfigurationError, match="priority"):
        app.job(name="p", priority=256)(lambda ctx: None)

    @app.job(name="once")
    def once(ctx: object) -> None: ...

    with pytest.raises(ConfigurationError, match="twice"):
        app.job(name="once")(lambda ctx: None)
    with pytest.raises(UnknownJobType, match="known: once"):
        app.registry.get("onse")


def test_building_an_app_opens_no_connection() -> None:
    app = Crisper("t")
    assert "store" not in app.__dict__ and "celery" not in app.__dict__


def test_the_public_api_is_small_and_sorted() -> None:
    assert crisper.__all__ == sorted(crisper.__all__)
    assert all(hasattr(crisper, name) for name in crisper.__all__)


def test_wake_ups_go_one_per_type_and_queue_at_their_highest_priority() -> None:
    from crisper.engine.dispatch import wake_groups
    from crisper.store.sweeps import Dispatch

    ids = [uuid.UUID(int=i) for i in range(6)]
    todo = [Dispatch(ids[0], "a", "q", 0), Dispatch(ids[1], "a", "q", 200),
            Dispatch(ids[2], "b", "q", 3), Dispatch(ids[3], "a", "other", 0),
            Dispatch(ids[4], "a", "q", 7, limits=(3.0, 1.0)), Dispatch(ids[5], "b", "q", 1)]

    got = wake_groups(todo)

    assert list(got) == [("a", "q"), ("b", "q"), ("a", "other")]
    assert got[("a", "q")] == (200, [ids[0], ids[1], ids[4]])
    assert got[("b", "q")] == (3, [ids[2], ids[5]])
    assert got[("a", "other")] == (0, [ids[3]])


def test_a_jobs_own_hard_limit_replaces_its_types() -> None:
    from crisper.engine.time_guard import Limits, limits_of

    assert limits_of(1.0, 3.0, 7200.0) == Limits(1.0, 3.0)
    assert limits_of(3600.0, None, 7200.0) == Limits(3600.0, 7200.0)
    assert limits_of(None, None, None) == Limits(None, None)


def test_the_retired_batch_option_is_accepted_with_a_deprecation_warning() -> None:
    from crisper import Crisper

    app = Crisper("retired")
    with pytest.warns(DeprecationWarning, match="batch= no longer changes anything"):
        @app.job(batch=5)
        def legacy(ctx: object) -> None: ...
    assert "legacy" in app.registry and not hasattr(app.registry.get("legacy").options, "batch")


@pytest.mark.parametrize("options", [{"attempts": 0}, {"backoff": "soon"}, {"max_backoff": -1}])
def test_a_bad_retry_policy_is_a_configuration_error(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match="Retry"):
        Retry(**options)  # type: ignore[arg-type]


def test_the_cli_exit_code_is_the_one_each_error_class_states() -> None:
    from crisper.cli.main import exit_code_for
    from crisper.errors import Cancelled, InvalidRequest, KeyNotFound, StoreUnavailable

    assert [exit_code_for(e) for e in (InvalidRequest("f", "bad"), KeyNotFound(), Cancelled(),
                                       StoreUnavailable(), CrisperError("odd"))] == [2, 5, 3, 7, 1]
