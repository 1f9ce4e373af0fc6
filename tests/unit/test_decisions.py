"""The lifecycle's decisions as pure functions, without a store: a submit's first state, a
cancel's effect, a lost worker's fate, a failed attempt's retry (retry.decide), each checked
against the transition table it must stay inside."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crisper.errors import InvalidTransition
from crisper.retry import Retry, decide
from crisper.states import (
    ACTIVE,
    INITIAL,
    TERMINAL,
    JobState,
    can_transition,
    cancel_effect,
    initial_state,
    lost_worker,
)

S = JobState
AT = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("hold", "run_at", "expected"), [
    (False, None, S.QUEUED),
    (False, AT - timedelta(seconds=1), S.QUEUED),  # due already
    (False, AT, S.QUEUED),
    (False, AT + timedelta(seconds=1), S.SCHEDULED),
    (True, None, S.HELD),
    (True, AT + timedelta(hours=1), S.HELD),  # held wins: a start queues it
])
def test_a_submit_starts_held_scheduled_or_queued(hold: bool, run_at: datetime | None,
                                                  expected: JobState) -> None:
    state = initial_state(hold, run_at, AT)
    assert state is expected and state in INITIAL


@pytest.mark.parametrize(("state", "requested", "effect"), [
    *[(s, False, "move") for s in sorted(ACTIVE - {S.RUNNING})],
    (S.RUNNING, False, "note"),  # asked to stop: the job stays running, noted
    (S.RUNNING, True, "none"),  # asked again: nothing more
])
def test_a_cancel_moves_a_waiting_job_and_notes_a_request_on_a_running_one(
        state: JobState, requested: bool, effect: str) -> None:
    assert cancel_effect("j", state, requested) == effect
    assert can_transition(state, S.CANCELLED)


@pytest.mark.parametrize("state", sorted(TERMINAL))
def test_an_ended_job_cannot_be_cancelled(state: JobState) -> None:
    with pytest.raises(InvalidTransition):
        cancel_effect("j", state, False)


@pytest.mark.parametrize(("cancel", "interrupted", "rescues", "expected"), [
    (False, False, 0, (S.QUEUED, "worker_lost", True)),
    (False, False, 2, (S.QUEUED, "worker_lost", True)),
    (False, False, 3, (S.FAILED, "poisoned", False)),  # lost `cap` times already
    (False, True, 3, (S.QUEUED, "interrupted", False)),  # announced: never counted
    (True, True, 9, (S.CANCELLED, "worker_lost", False)),  # asked to cancel: it ends so
])
def test_a_lost_worker_rescues_poisons_or_cancels(cancel: bool, interrupted: bool, rescues: int,
                                                  expected: tuple[JobState, str, bool]) -> None:
    fate = lost_worker(cancel, interrupted, rescues, cap=3)
    assert (fate.target, fate.reason, fate.counted) == expected
    assert can_transition(S.RUNNING, fate.target)


@pytest.mark.parametrize(("spent", "error", "retried"), [
    (1, RuntimeError("x"), True), (2, RuntimeError("x"), False), (1, KeyError("k"), False)])
def test_a_failed_attempt_retries_while_attempts_and_the_policy_allow(
        spent: int, error: Exception, retried: bool) -> None:
    policy = Retry(attempts=2, backoff=1, jitter=False, dont_retry_on=(KeyError,))
    decision = decide(spent, 2, policy.to_json(), error, policy.retry_on, policy.dont_retry_on)
    assert decision.retry is retried
    assert can_transition(S.RUNNING, S.RETRYING if retried else S.FAILED)
