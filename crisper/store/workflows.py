"""Workflow SQL: create a graph, release children when a node ends, cancel, resume, read.

Callers own the transaction. The one hook the outcome path calls is `release`: a node's end
is recorded and its waiting children are moved in the same transaction, with a fixed number
of statements per finished node (children are found through the edges table's primary key,
never by scanning siblings).
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import JSON, case, func, insert, literal, null, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from crisper.errors import ConcurrentChange
from crisper.states import ACTIVE, JobState, Move, cancel_effect, move
from crisper.store import jobs as job_sql
from crisper.store.models import (
    UTCDateTime,
    job_events,
    jobs,
    metadata,
    workflow_edges,
    workflows,
)
from crisper.store.statements import dialect_of, event, moving, note
from crisper.store.sweeps import Dispatch

S = JobState
# A workflow's moves, each checked against the table when this module is imported.
PARENTS_DONE = move(S.QUEUED, S.WAITING)
ENDED_BY_PARENT = {t: move(t, S.WAITING) for t in (S.FAILED, S.SKIPPED, S.CANCELLED)}
STOP = move(S.CANCELLED, *(ACTIVE - {S.RUNNING}))  # a running node is asked, not stopped
Db = Session | Connection
CHUNK = 5000  # ids per IN list (PostgreSQL takes at most 65,535 parameters per statement)
RESET = {"attempt": 0, "result": None, "error": None, "progress_current": None,
         "progress_total": None, "progress_message": None, "finished_at": None,
         "cancelled_at": None, "cancel_requested_at": None, "started_at": None, "run_at": None,
         "worker": None, "task_id": None, "returned_attempts": 0, "rescues": 0,
         "interrupted_at": None, "dispatched_at": None}


# -- create ---------------------------------------------------------------------------------

def create(db: Db, workflow: dict[str, Any], rows: Sequence[dict[str, Any]],
           edges: Sequence[dict[str, Any]], at: datetime) -> None:
    """Insert the workflow, its nodes (jobs, with their events) and its edges.

    PostgreSQL: nodes and edges are copied in (COPY, in the same transaction), and the nodes'
    "submitted" events made by one INSERT … SELECT: ten thousand nodes in well under a second.
    """
    db.execute(insert(workflows), [workflow])
    job_sql.check_initial(rows)
    if not _copies(db):  # SQLite, or an AsyncSession's connection (async psycopg)
        job_sql.create(db, rows, at)
        if edges:
            db.execute(insert(workflow_edges), list(edges))
        return
    _copy(db, jobs.name, rows)
    _copy(db, workflow_edges.name, edges)
    db.execute(insert(job_events).from_select(
        ["job_id", "at", "from_state", "to_state", "reason", "attempt"],
        select(jobs.c.id, literal(at, UTCDateTime()), null(), jobs.c.state,
               literal("submitted"), literal(0))
        .where(jobs.c.workflow_id == workflow["id"])))


def _copies(db: Db) -> bool:
    """Whether COPY can run on this transaction's connection: synchronous psycopg only."""
    if dialect_of(db) != "postgresql":
        return False
    conn = db.connection() if isinstance(db, Session) else db
    return isinstance(conn.connection.driver_connection, psycopg.Connection)


def _copy(db: Db, table: str, rows: Sequence[dict[str, Any]]) -> None:
    """COPY rows (all with the same keys) into `table` on the transaction's own connection."""
    if not rows:
        return
    columns = list(rows[0])
    conn = db.connection() if isinstance(db, Session) else db
    raw = conn.connection.driver_connection
    assert raw is not None
    json_columns = {c.name for c in metadata.tables[table].c if isinstance(c.type, JSON)}
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    with raw.cursor() as cursor, cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row([Jsonb(row[c]) if c in json_columns and row[c] is not None
                            else row[c] for c in columns])


# -- release: the outcome path's hook -------------------------------------------------------

def release(db: Db, parent_id: uuid.UUID, state: JobState, at: datetime) -> list[Dispatch]:
    """A node ended in `state`: count its waiting children down, or end them by policy.

    Children whose last parent is done become queued (returned, still unsent, for the caller
    to publish after commit; the relay sends them otherwise). Children ended by a failed
    parent (failed or skipped) are released in turn, one node at a time.
    """
    released: list[Dispatch] = []
    todo = deque([(parent_id, state)])
    while todo:
        node, ended = todo.popleft()
        children = _lock_children(db, node)
        if not children:
            continue
        groups: dict[JobState, list[uuid.UUID]] = {}
        for child_id, policy in children:
            groups.setdefault(_effect(ended, policy), []).append(child_id)
        released += _count_down(db, groups.pop(S.QUEUED, []), node, at)
        for target, ids in groups.items():
            for child_id in _end(db, ids, target, node, ended, at):
                todo.append((child_id, target))
    return released


def _effect(parent: JobState, policy: str) -> JobState:
    """What a parent's end does to a waiting child: QUEUED means "one parent fewer to wait"."""
    if parent is S.SUCCEEDED or policy == "run":
        return S.QUEUED
    if parent is S.SKIPPED or policy == "skip":
        return S.SKIPPED
    return S.CANCELLED if parent is S.CANCELLED else S.FAILED


def _lock_children(db: Db, parent_id: uuid.UUID) -> list[tuple[uuid.UUID, str]]:
    """The parent's waiting children, locked in id order (so releases never deadlock)."""
    stmt = (
        select(jobs.c.id, workflow_edges.c.policy)
        .join(workflow_edges, workflow_edges.c.child_id == jobs.c.id)
        .where(workflow_edges.c.parent_id == parent_id, jobs.c.state == S.WAITING.value)
        .order_by(jobs.c.id).with_for_update(of=jobs)
    )
    return [(r.id, r.policy) for r in db.execute(stmt)]


def _count_down(db: Db, ids: list[uuid.UUID], parent: uuid.UUID, at: datetime
                ) -> list[Dispatch]:
    released: list[Dispatch] = []
    last = jobs.c.pending_parents <= 1
    for chunk in _chunks(ids):  # the last parent moves the child; the others only count down
        rows = db.execute(
            moving(PARENTS_DONE, jobs.c.id.in_(chunk), when=last,
                   pending_parents=jobs.c.pending_parents - 1,
                   queued_at=case((last, literal(at, UTCDateTime())), else_=None),
                   dispatched_at=None)
            .returning(jobs.c.id, jobs.c.state, jobs.c.type, jobs.c.queue, jobs.c.priority,
                       jobs.c.attempt)
        ).all()
        ready = [r for r in rows if r.state == S.QUEUED.value]
        if ready:
            db.execute(insert(job_events), [
                event(r.id, PARENTS_DONE.source, PARENTS_DONE.target, "parents_done", at, r.attempt,
                      detail={"last_parent": str(parent)}) for r in ready])
        released += [Dispatch(r.id, r.type, r.queue, r.priority) for r in ready]
    return released


def _end(db: Db, ids: list[uuid.UUID], target: JobState, parent: uuid.UUID,
         parent_state: JobState, at: datetime) -> list[uuid.UUID]:
    """End waiting children because a parent failed, was cancelled or skipped."""
    name = db.execute(select(jobs.c.workflow_node).where(jobs.c.id == parent)).scalar()
    reason = f"parent_{parent_state.value}"
    message = f"parent node {name!r} ({parent}) {parent_state.value}"
    error = {"type": "ParentFailed", "message": message, "parent": str(parent), "node": name}
    ended: list[uuid.UUID] = []
    ending = ENDED_BY_PARENT[target]
    for chunk in _chunks(ids):
        values: dict[str, Any] = {"finished_at": at,
                                  "error": None if target is S.SKIPPED else error}
        if target is S.CANCELLED:
            values["cancelled_at"] = at
        rows = db.execute(
            moving(ending, jobs.c.id.in_(chunk), **values).returning(jobs.c.id, jobs.c.attempt)
        ).all()
        if rows:
            db.execute(insert(job_events), [
                event(r.id, ending.source, target, reason, at, r.attempt,
                      detail={"parent": str(parent), "node": name}) for r in rows])
        ended += [r.id for r in rows]
    return ended


def _chunks(ids: list[uuid.UUID]) -> list[list[uuid.UUID]]:
    return [ids[i:i + CHUNK] for i in range(0, len(ids), CHUNK)]


# -- cancel and resume ----------------------------------------------------------------------

def cancel(session: Session, workflow_id: uuid.UUID, at: datetime) -> tuple[int, int]:
    """Cancel every unfinished node; ask the running ones to stop. Answers (cancelled, asked)."""
    session.execute(update(workflows).where(workflows.c.id == workflow_id)
                    .values(cancelled_at=at))
    locked = session.execute(
        select(jobs.c.id, jobs.c.state, jobs.c.attempt, jobs.c.cancel_requested_at)
        .where(jobs.c.workflow_id == workflow_id,
               jobs.c.state.in_([s.value for s in ACTIVE]))
        .order_by(jobs.c.id).with_for_update()
    ).all()
    effects = {r.id: cancel_effect(r.id, S(r.state), r.cancel_requested_at is not None)
               for r in locked}
    stop = [r for r in locked if effects[r.id] == "move"]
    ask = [r for r in locked if effects[r.id] == "note"]
    for chunk in _chunks([r.id for r in stop]):
        session.execute(moving(STOP, jobs.c.id.in_(chunk), cancelled_at=at, finished_at=at))
    for chunk in _chunks([r.id for r in ask]):
        session.execute(update(jobs).where(jobs.c.id.in_(chunk), jobs.c.state == S.RUNNING.value)
                        .values(cancel_requested_at=at))
    history = [event(r.id, S(r.state), S.CANCELLED, "workflow_cancelled", at, r.attempt)
               for r in stop]
    history += [note(r.id, "cancel_requested", at, r.attempt) for r in ask]
    if history:
        session.execute(insert(job_events), history)
    return len(stop), len(ask)


@dataclass(frozen=True)
class Rerun:
    """One node a resume puts back: how many of its parents rerun too, and its new params."""

    id: uuid.UUID
    state: JobState
    attempt: int
    pending: int
    params: dict[str, Any] | None = None  # edited params (a replay with edit)
    before: dict[str, Any] | None = None


def rerun(session: Session, workflow_id: uuid.UUID, nodes: Sequence[Rerun], at: datetime
          ) -> list[Dispatch]:
    """Put finished nodes back: waiting for their rerun parents, or queued if none rerun.

    Nodes alike (same state, same count of rerun parents, no edit) move in one UPDATE each.
    """
    session.execute(update(workflows).where(workflows.c.id == workflow_id)
                    .values(retried_at=at, cancelled_at=None,  # a resumed cancel is over
                            finished_at=None))  # and its next end is announced again
    groups: dict[tuple[JobState, int, int], list[Rerun]] = {}
    for i, node in enumerate(nodes):  # an edited node is a group of its own
        key = (node.state, node.pending, -1 if node.params is None else i)
        groups.setdefault(key, []).append(node)
    history = []
    for (state, pending, _), members in groups.items():
        target = S.QUEUED if pending == 0 else S.WAITING
        values: dict[str, Any] = {**RESET, "pending_parents": pending,
                                  "queued_at": at if target is S.QUEUED else None}
        edited = members[0] if members[0].params is not None else None
        detail = None
        if edited is not None:
            values["params"] = edited.params
            detail = {"edit": {"before": edited.before, "after": edited.params}}
        rerun_from = Move(frozenset({state}), target)  # checked: state -> target in the table
        for chunk in _chunks([n.id for n in members]):
            moved = session.execute(moving(rerun_from, jobs.c.id.in_(chunk), **values))
            if moved.rowcount != len(chunk):  # type: ignore[attr-defined]
                raise ConcurrentChange(workflow_id)
        reason = "retried_with_edit" if detail else "retried"
        history += [event(n.id, state, target, reason, at, n.attempt, detail=detail)
                    for n in members]
    if history:
        session.execute(insert(job_events), history)
    ready: list[Dispatch] = []
    for chunk in _chunks([n.id for n in nodes if n.pending == 0]):
        rows = session.execute(select(jobs.c.id, jobs.c.type, jobs.c.queue, jobs.c.priority)
                               .where(jobs.c.id.in_(chunk)))
        ready += [Dispatch(r.id, r.type, r.queue, r.priority) for r in rows]
    return ready


def mark_finished(session: Session, at: datetime, limit: int = 100) -> list[Any]:
    """Note the workflows whose every node has ended, once each; answer (id, tenant, name,
    cancelled_at) of those noted now.

    Several schedulers skip each other's rows, and the UPDATE is conditional, so each end is
    noted by exactly one transaction. Ends are found by the scheduler, not at each node's
    outcome: two last nodes ending at once would each see the other still running.
    """
    active_node = (select(jobs.c.id)
                   .where(jobs.c.workflow_id == workflows.c.id,
                          jobs.c.state.in_([s.value for s in ACTIVE]))
                   .exists())
    ended = list(session.execute(
        select(workflows.c.id).where(workflows.c.finished_at.is_(None), ~active_node)
        .order_by(workflows.c.id).limit(limit).with_for_update(skip_locked=True)).scalars())
    if not ended:
        return []
    return list(session.execute(
        update(workflows).where(workflows.c.id.in_(ended), workflows.c.finished_at.is_(None))
        .values(finished_at=at)
        .returning(workflows.c.id, workflows.c.tenant, workflows.c.name,
                   workflows.c.cancelled_at)).all())


# -- read -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class NodeRow:
    id: uuid.UUID
    node: str
    type: str
    state: JobState
    attempt: int
    pending_parents: int | None
    params: dict[str, Any]
    error: dict[str, Any] | None
    started_at: datetime | None
    finished_at: datetime | None


def get(session: Session, workflow_id: uuid.UUID, tenant: str | None = None) -> Any:
    stmt = select(workflows).where(workflows.c.id == workflow_id)
    if tenant is not None:
        stmt = stmt.where(workflows.c.tenant == tenant)
    return session.execute(stmt).first()


def nodes(session: Session, workflow_id: uuid.UUID, for_update: bool = False) -> list[NodeRow]:
    stmt = (select(jobs.c.id, jobs.c.workflow_node, jobs.c.type, jobs.c.state, jobs.c.attempt,
                   jobs.c.pending_parents, jobs.c.params, jobs.c.error, jobs.c.started_at,
                   jobs.c.finished_at)
            .where(jobs.c.workflow_id == workflow_id).order_by(jobs.c.id))
    if for_update:
        stmt = stmt.with_for_update()
    return [NodeRow(r.id, r.workflow_node, r.type, S(r.state), r.attempt, r.pending_parents,
                    r.params, r.error, r.started_at, r.finished_at) for r in session.execute(stmt)]


def edges(session: Session, workflow_id: uuid.UUID) -> list[Any]:
    stmt = (select(workflow_edges.c.parent_id, workflow_edges.c.child_id,
                   workflow_edges.c.policy, workflow_edges.c.receives)
            .where(workflow_edges.c.workflow_id == workflow_id)
            .order_by(workflow_edges.c.child_id, workflow_edges.c.position))
    return list(session.execute(stmt))


def list_workflows(session: Session, tenant: str | None, before: uuid.UUID | None,
                   limit: int) -> list[Any]:
    """Newest first (ids are time-ordered), keyset-paginated."""
    stmt = select(workflows)
    if tenant is not None:
        stmt = stmt.where(workflows.c.tenant == tenant)
    if before is not None:
        stmt = stmt.where(workflows.c.id < before)
    return list(session.execute(stmt.order_by(workflows.c.id.desc()).limit(limit)))


def state_counts(session: Session, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, int]]:
    """Nodes per state, for each workflow asked about (one grouped query)."""
    counts: dict[uuid.UUID, dict[str, int]] = {i: {} for i in ids}
    if not ids:
        return counts
    stmt = (select(jobs.c.workflow_id, jobs.c.state, func.count())
            .where(jobs.c.workflow_id.in_(list(ids)))
            .group_by(jobs.c.workflow_id, jobs.c.state))
    for workflow_id, state, n in session.execute(stmt):
        counts[workflow_id][state] = n
    return counts


def parent_results(db: Db, child_id: uuid.UUID) -> dict[str, Any]:
    """The results a node receives, by parent node name, in the order it declared them."""
    stmt = (select(jobs.c.workflow_node, jobs.c.result)
            .join(workflow_edges, workflow_edges.c.parent_id == jobs.c.id)
            .where(workflow_edges.c.child_id == child_id, workflow_edges.c.receives)
            .order_by(workflow_edges.c.position))
    return {r.workflow_node: r.result for r in db.execute(stmt)}


def delivery(db: Db, job_id: uuid.UUID, key: str) -> str | None:
    """How a node receives (its metadata's `key`: "result" or "list"), or None."""
    meta = db.execute(select(jobs.c.metadata).where(jobs.c.id == job_id)).scalar()
    return (meta or {}).get(key)
