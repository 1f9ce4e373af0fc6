"""Counting a scenario's outcome, total-queue-check style: from the store and from the marks
the job bodies wrote themselves (tests/apps/faultprobe.py), never from Crisper's word alone."""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from crisper.errors import CrisperError
from crisper.store import Store
from crisper.store.models import job_events, jobs
from tests.apps.faultprobe import TICK, Mark, read_marks

TERMINAL = {"succeeded", "failed", "cancelled"}
# Marks of one run further apart than this mean the run was frozen in between (SIGSTOP).
GAP = max(1.5, 5 * TICK)


@dataclass
class Figures:
    scenario: str
    submitted: int = 0
    succeeded: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    cancelled: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    duplicated: int = 0
    overlapping: int = 0
    stuck: int = 0
    running: int = 0
    recover: float | None = None
    note: str = ""
    examples: list[str] = field(default_factory=list)  # runs of duplicated/overlapping jobs

    def line(self) -> str:
        recover = "never" if self.recover is None else f"{self.recover:.1f}s"
        parts = [f"{self.scenario:<34}", f"submitted {self.submitted:>3}",
                 f"succeeded {self.succeeded:>3}", f"failed {_by_reason(self.failed)}"]
        if self.cancelled:
            parts.append(f"cancelled {_by_reason(self.cancelled)}")
        parts += [f"lost {self.lost}", f"duplicated {self.duplicated}",
                  f"overlapping {self.overlapping}", f"stuck {self.stuck}"]
        if self.running:
            parts.append(f"still running {self.running}")
        parts.append(f"recovered in {recover}")
        if self.note:
            parts.append(self.note)
        return "  ".join(parts)


def _by_reason(counts: Counter[str]) -> str:
    total = sum(counts.values())
    if not total:
        return "0"
    return f"{total} (" + ", ".join(f"{r}: {n}" for r, n in sorted(counts.items())) + ")"


@dataclass(frozen=True)
class Run:
    """One execution of one body, as its marks tell it."""

    job_id: str
    body: str
    attempt: int
    pid: int
    times: tuple[float, ...]
    ended: bool

    def segments(self) -> list[tuple[float, float]]:
        """The stretches this run was seen executing (a frozen stretch splits them)."""
        spans: list[tuple[float, float]] = []
        start = prev = self.times[0]
        for t in self.times[1:]:
            if t - prev > GAP:
                spans.append((start, prev))
                start = t
            prev = t
        spans.append((start, prev))
        return spans


def runs(folder: Path) -> dict[str, list[Run]]:
    """Each job's runs, from the marks under `folder`."""
    by_run: dict[str, list[Mark]] = defaultdict(list)
    for mark in read_marks(folder):
        by_run[mark.run].append(mark)
    result: dict[str, list[Run]] = defaultdict(list)
    for marks in by_run.values():
        first = marks[0]
        result[first.job_id].append(Run(
            first.job_id, first.body, first.attempt, first.pid,
            tuple(m.at for m in marks), any(m.event == "end" for m in marks)))
    return result


def overlaps(job_runs: list[Run]) -> bool:
    """Two runs of one job seen executing at the same moment."""
    spans = sorted((*seg, i) for i, run in enumerate(job_runs) for seg in run.segments())
    latest_end, owner = float("-inf"), -1
    for start, end, run in spans:
        if start <= latest_end and run != owner:
            return True
        if end > latest_end:
            latest_end, owner = end, run
    return False


def settled(store: Store, ids: list[uuid.UUID]) -> bool:
    states = _states(store, ids)
    return len(states) == len(ids) and all(state in TERMINAL for state in states.values())


def wait_settled(store: Store, ids: list[uuid.UUID], timeout: float) -> float | None:
    """When every job reached a terminal state (time.time()), or None if not within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if settled(store, ids):
                return time.time()
        except (CrisperError, SQLAlchemyError):  # the store may be down: keep waiting
            pass
        time.sleep(0.25)
    return None


def _states(store: Store, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    with store.read() as session:
        rows = session.execute(select(jobs.c.id, jobs.c.state).where(jobs.c.id.in_(ids))).all()
    return {job_id: state for job_id, state in rows}


def count(scenario: str, store: Store, folder: Path, ids: list[uuid.UUID],
          grace: float) -> Figures:
    """The scenario's figures now. Stuck: running with a lease expired more than `grace` ago
    (no live worker renews it); lost: any other job not terminal, or whose row is missing."""
    now = datetime.now(UTC)
    with store.read() as session:
        rows = session.execute(select(jobs.c.id, jobs.c.state, jobs.c.lease_expires_at)
                               .where(jobs.c.id.in_(ids))).all()
        ends = session.execute(
            select(job_events.c.job_id, job_events.c.to_state, job_events.c.reason)
            .where(job_events.c.job_id.in_(ids), job_events.c.to_state.in_(TERMINAL))
            .order_by(job_events.c.id)).all()
    reason = {job_id: why for job_id, _, why in ends}  # the last terminal event's reason
    figures = Figures(scenario, submitted=len(ids), lost=len(ids) - len(rows))
    for job_id, state, lease_until in rows:
        if state == "succeeded":
            figures.succeeded += 1
        elif state == "failed":
            figures.failed[reason.get(job_id, "no reason recorded")] += 1
        elif state == "cancelled":
            figures.cancelled[reason.get(job_id, "no reason recorded")] += 1
        elif state == "running" and (lease_until is None
                                     or lease_until < now - timedelta(seconds=grace)):
            figures.stuck += 1
        elif state == "running":
            figures.running += 1
        else:
            figures.lost += 1
    job_runs = runs(folder)
    for job_id in map(str, ids):
        done = [r for r in job_runs.get(job_id, []) if r.ended]
        duplicated, overlapping = len(done) > 1, overlaps(job_runs.get(job_id, []))
        figures.duplicated += duplicated
        figures.overlapping += overlapping
        if duplicated or overlapping:
            figures.examples.append(describe(job_id, job_runs[job_id]))
    return figures


def describe(job_id: str, job_runs: list[Run]) -> str:
    """A job's runs in a line: body, attempt, pid, seen-executing stretches, how it ended."""
    base = min(r.times[0] for r in job_runs)
    parts = []
    for run in sorted(job_runs, key=lambda r: r.times[0]):
        spans = ",".join(f"{a - base:.1f}-{b - base:.1f}" for a, b in run.segments())
        parts.append(f"{run.body} attempt {run.attempt} pid {run.pid} at {spans}s "
                     f"{'ran to its end' if run.ended else 'did not finish'}")
    return f"job {job_id}: " + "; ".join(parts)
