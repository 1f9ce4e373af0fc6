"""Job states and the one table of allowed transitions; everything else asks here.

    submit ─┬─> held ──start──> queued ─claim─> running ─┬─> succeeded
            ├─> scheduled ─due─> queued                  ├─> retrying ─due─> queued
            ├─> queued <──────rescue (worker lost)─────── ├─> failed
            └─> waiting ─last parent done─> queued        └─> cancelled
                waiting ─a parent failed─> failed | skipped (by the edge's policy)
       (any non-terminal) ──cancel──> cancelled
       (terminal) ──retry──> queued, or waiting (a workflow resumed)

A store statement that moves jobs is built from a `Move` (checked against the table when it
is made, so a forbidden move fails at import); each event it writes is checked again. A
cancel request on a running job is a note in its history, not a move: it stays running.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from crisper.errors import InvalidTransition


class JobState(StrEnum):
    HELD = "held"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    WAITING = "waiting"  # a workflow node whose parents have not all finished
    SKIPPED = "skipped"  # a workflow node not run: a parent failed under the "skip" policy

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED,
                      JobState.SKIPPED})
ACTIVE = frozenset(JobState) - TERMINAL
# Jobs not started (or between attempts) and not workflow nodes: not the `waiting` state.
NOT_STARTED = frozenset({JobState.HELD, JobState.SCHEDULED, JobState.QUEUED, JobState.RETRYING})
# The states a job may be created in (a submit; a workflow node waits for its parents).
INITIAL = frozenset({JobState.HELD, JobState.SCHEDULED, JobState.QUEUED, JobState.WAITING})

_S = JobState
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    _S.HELD: frozenset({_S.QUEUED, _S.CANCELLED}),
    _S.SCHEDULED: frozenset({_S.QUEUED, _S.CANCELLED}),
    # queued -> scheduled: flow control defers a job (rate limit, concurrency) with no attempt.
    _S.QUEUED: frozenset({_S.RUNNING, _S.SCHEDULED, _S.CANCELLED}),
    # running -> queued: a rescue; the worker was lost or interrupted, no attempt is spent.
    _S.RUNNING: frozenset({_S.SUCCEEDED, _S.FAILED, _S.RETRYING, _S.CANCELLED, _S.QUEUED}),
    _S.RETRYING: frozenset({_S.QUEUED, _S.CANCELLED}),
    # waiting -> queued when its last parent is done; -> failed or skipped when a parent failed.
    _S.WAITING: frozenset({_S.QUEUED, _S.FAILED, _S.SKIPPED, _S.CANCELLED}),
    # terminal -> waiting: a resumed workflow reruns a node whose parents rerun too.
    _S.SUCCEEDED: frozenset({_S.QUEUED, _S.WAITING}),
    _S.FAILED: frozenset({_S.QUEUED, _S.WAITING}),
    _S.CANCELLED: frozenset({_S.QUEUED, _S.WAITING}),
    _S.SKIPPED: frozenset({_S.QUEUED, _S.WAITING}),
}

# The user-facing actions, each a move to one target state from the states the table allows.
ACTIONS: dict[str, JobState] = {
    "started": _S.QUEUED,  # held -> queued
    "cancelled": _S.CANCELLED,
    "retried": _S.QUEUED,  # terminal -> queued
}


def can_transition(source: JobState, target: JobState) -> bool:
    return target in TRANSITIONS[source]


def sources(target: JobState) -> frozenset[JobState]:
    """Every state from which `target` may be entered: the WHERE clause of a conditional update."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


def action_sources(action: str) -> frozenset[JobState]:
    """States a user action is allowed from (start and retry are narrower than their target)."""
    if action == "started":
        return frozenset({_S.HELD})
    if action == "retried":
        return TERMINAL
    return sources(ACTIONS[action])


def check_action(job_id: object, state: JobState, action: str) -> None:
    """Raise InvalidTransition, with a sentence, when `action` is not allowed from `state`."""
    allowed = action_sources(action)
    if state not in allowed:
        raise InvalidTransition(job_id, state.value, action, sorted(s.value for s in allowed))


def transition(source: JobState | None, target: JobState, job_id: object = "?") -> JobState:
    """Return `target` if the table allows source -> target, else raise (None: a creation)."""
    allowed = INITIAL if source is None else TRANSITIONS[source]
    if target not in allowed:
        raise InvalidTransition(job_id, "new" if source is None else source.value,
                                f"moved to {target.value}",
                                sorted(s.value for s in (sources(target) if source else INITIAL)))
    return target


@dataclass(frozen=True)
class Move:
    """What one store statement does: take jobs in `sources` to `target`.

    Made only if the table allows every source -> target, so a statement built from a Move
    (its WHERE from `sources`, its SET from `target`) cannot make a move the table forbids.
    """

    sources: frozenset[JobState]
    target: JobState

    def __post_init__(self) -> None:
        if not self.sources:
            raise InvalidTransition("?", "no state", f"moved to {self.target.value}",
                                    sorted(s.value for s in sources(self.target)))
        for source in sorted(self.sources):
            transition(source, self.target)

    @property
    def source(self) -> JobState:
        """The one source of a single-source move (its events name it)."""
        (only,) = self.sources
        return only


def move(target: JobState, *from_: JobState) -> Move:
    """The move to `target` from the states given (default: every state the table allows)."""
    return Move(frozenset(from_) or sources(target), target)


# Reasons of events that are notes: something happened to a job that did not move it.
NOTES = frozenset({"cancel_requested", "cancel_not_forcible"})


# -- decisions: what a job's facts call for, as pure functions (unit-tested without a store) --

def initial_state(hold: bool, run_at: datetime | None, at: datetime) -> JobState:
    """The state a submitted job starts in: held if asked, scheduled if due later, else queued."""
    if hold:
        return JobState.HELD
    if run_at is not None and run_at > at:
        return JobState.SCHEDULED
    return JobState.QUEUED


def cancel_effect(job_id: object, state: JobState, requested: bool
                  ) -> Literal["move", "note", "none"]:
    """What a cancel does: move the job to cancelled; or, running, note the request (the job
    stays running; its worker stops it), once: asked again, nothing. InvalidTransition if the
    job has ended."""
    check_action(job_id, state, "cancelled")
    if state is not JobState.RUNNING:
        return "move"
    return "none" if requested else "note"


@dataclass(frozen=True)
class LostWorker:
    """What the lifeline does with a running job whose lease ran out."""

    target: JobState  # queued (rescued, unspent), cancelled or failed
    reason: str
    counted: bool = False  # a rescue that adds to the job's poison-pill count


def lost_worker(cancel_requested: bool, interrupted: bool, rescues: int, cap: int) -> LostWorker:
    """A job asked to cancel ends cancelled; an announced interruption is rescued uncounted;
    a job that lost its worker `cap` times already fails as poisoned; else a counted rescue."""
    if cancel_requested:
        return LostWorker(JobState.CANCELLED, "worker_lost")
    if interrupted:
        return LostWorker(JobState.QUEUED, "interrupted")
    if rescues >= cap:
        return LostWorker(JobState.FAILED, "poisoned")
    return LostWorker(JobState.QUEUED, "worker_lost", counted=True)
