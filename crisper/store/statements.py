"""The shared machinery of job statements: events, and the PostgreSQL fast path in one place."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from datetime import datetime
from functools import cache, lru_cache
from typing import Any, cast

import psycopg
from psycopg.rows import namedtuple_row
from psycopg.types.json import Jsonb
from sqlalchemy import (
    JSON,
    ColumnElement,
    CursorResult,
    String,
    Update,
    bindparam,
    case,
    func,
    insert,
    literal_column,
    null,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import BindParameter

from crisper.names import queue_problem
from crisper.records import JobRecord
from crisper.states import NOTES, JobState, Move, transition
from crisper.store.models import JSONB, UTCDateTime, job_events, jobs

RECORD_COLUMNS = [jobs.c[name] for name in JobRecord.__dataclass_fields__]


def changed(session: Session, statement: Any) -> int:
    """How many rows an UPDATE or DELETE touched."""
    result = session.execute(statement)
    return int(cast(CursorResult[Any], result).rowcount)


def record_event(
    session: Session, job_id: uuid.UUID, source: JobState | None, target: JobState, reason: str,
    at: datetime, attempt: int, worker: str | None = None, detail: dict[str, Any] | None = None,
) -> None:
    session.execute(insert(job_events), [event(job_id, source, target, reason, at, attempt,
                                               worker, detail)])


def event(
    job_id: uuid.UUID, source: JobState | None, target: JobState, reason: str, at: datetime,
    attempt: int, worker: str | None = None, detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An event row for a move, which the table must allow (source None: the job's creation)."""
    transition(source, target, job_id)
    return {
        "job_id": job_id, "at": at, "from_state": source.value if source else None,
        "to_state": target.value, "reason": reason, "attempt": attempt, "worker": worker,
        "detail": detail,
    }


def note(job_id: uuid.UUID, reason: str, at: datetime, attempt: int,
         worker: str | None = None, detail: dict[str, Any] | None = None) -> dict[str, Any]:
    """An event row that is not a move (no from or to state): a cancel request, say."""
    if reason not in NOTES:
        raise ValueError(f"{reason!r} is not a note (states.NOTES)")
    return {"job_id": job_id, "at": at, "from_state": None, "to_state": None, "reason": reason,
            "attempt": attempt, "worker": worker, "detail": detail}


def record_note(session: Session, job_id: uuid.UUID, reason: str, at: datetime, attempt: int,
                worker: str | None = None, detail: dict[str, Any] | None = None) -> None:
    session.execute(insert(job_events), [note(job_id, reason, at, attempt, worker, detail)])


def state_in(states: Collection[JobState], keyed: bool = False) -> ColumnElement[bool]:
    """The job is in one of `states`.

    `keyed`: the statement finds its rows by primary key, and the state is only checked.
    It is then compared through coalesce(), which PostgreSQL cannot match to the predicate
    of a partial index (queued, running, active jobs). Otherwise such an index, whose
    statistics were taken while it was nearly empty, looks free, and the planner reads it
    whole instead of the key: on a fresh table with 2,000 jobs queued, each claim and each
    outcome read about a thousand index entries, a cost that grew with the backlog.
    """
    values = sorted(s.value for s in states)
    state: ColumnElement[str] = func.coalesce(jobs.c.state, "") if keyed else jobs.c.state
    return state == values[0] if len(values) == 1 else state.in_(values)


def moving(move: Move, *where: Any, when: Any = None, keyed: bool = False,
           **values: Any) -> Update:
    """The one way the store writes a job's state: UPDATE jobs SET state = the move's target
    WHERE the job is in one of the move's sources (and `where`). With `when`, only rows that
    meet it move; the others get `values` but keep their state. `keyed`: `where` names the
    rows by primary key (see `state_in`)."""
    target: Any = move.target.value
    if when is not None:
        target = case((when, target), else_=jobs.c.state)
    return (update(jobs).where(state_in(move.sources, keyed), *where)
            .values(state=target, **values))


def dialect_of(db: Session | Connection) -> str:
    return (db.get_bind() if isinstance(db, Session) else db).dialect.name


def never_sort(session: Session) -> None:
    """For the rest of `session`'s transaction, PostgreSQL takes an index's order rather than
    sort: as on the autocommit engine (db._never_sort), for a statement in a transaction that
    wants the first few of a long backlog in an order some index holds."""
    if dialect_of(session) == "postgresql":
        session.execute(text("SET LOCAL enable_sort = off"))


def pg_sql(statement: Any) -> tuple[str, dict[str, Any]]:
    """A Core statement compiled once for psycopg, with its constant parameters.

    Building and cache-keying Core statements costs more CPU per job than the database work
    itself, so the two statements every job runs are built once, from the same definitions
    the portable path uses, and run with exec_driver_sql.

    The constants the definitions hold (states, 'observed', LIMIT 1) are written into the
    SQL as literals, not sent as parameters: psycopg prepares a statement run often, and
    PostgreSQL's generic plan for it can use a partial index (`WHERE state = 'queued'`) only
    if the statement names that state itself. With `state = $7`, the claim's plan fell back
    to sorting the queue's whole backlog on every claim (24 ms with 20,000 jobs queued).
    """
    inlined = visitors.replacement_traverse(statement, {}, _literal_constant)
    compiled = inlined.compile(dialect=_PG_DIALECT)
    return str(compiled), dict(compiled.params)


@lru_cache(maxsize=1024)
def with_queue_literal(sql: str, queue: str) -> str:
    """`sql` (from `pg_sql`) with its `want_queue` parameter written in as a literal.

    A claim's plan depends on its queue: with one queue holding a large backlog, PostgreSQL's
    generic plan for `queue = $1` expected the whole backlog in any queue and planned a scan,
    so it planned every claim afresh instead (0.4 ms more per claim and per outcome with
    20,000 jobs queued on another queue). Named, the queue gets a generic plan of its own
    that uses the queue's index. Only a name that passes the queue rule (names.py) is
    written in, and it is quoted as a literal; any other keeps its parameter.
    """
    if queue_problem(queue) is not None:
        return sql
    quoted = _QUOTE_STRING(queue).replace("%", "%%")  # psycopg reads % as a placeholder
    return sql.replace("%(want_queue)s", quoted)


def _literal_constant(element: Any, **_: Any) -> Any:
    """A value the statement's definition fixed (an anonymous parameter), as a SQL literal."""
    if not (isinstance(element, BindParameter) and element.unique and not element.expanding
            and element.value is not None and element.callable is None):
        return None
    render = element.type.literal_processor(_PG_DIALECT)
    return None if render is None else literal_column(render(element.value), element.type)


_PG_DIALECT = postgresql.psycopg.dialect()
_QUOTE_STRING = cast(Callable[[str], str], cast(Any, String()).literal_processor(_PG_DIALECT))
EVENT_COLUMNS = ["job_id", "at", "from_state", "to_state", "reason", "attempt", "worker",
                  "detail"]


def _with_event(statement: Any, move: Move) -> Any:
    """PostgreSQL: the UPDATE … RETURNING and its event INSERT as one data-modifying CTE."""
    moved = statement.cte("moved")
    return select(moved).add_cte(moved_event(moved, move).cte("logged"))


def moved_event(moved: Any, move: Move, reason: Any = None, detail: Any = None) -> Any:
    """The INSERT of one event per row of `moved` (a CTE of a move's UPDATE … RETURNING id,
    attempt); the time and the worker are the parameters `at` and `worker`, the reason and
    the detail the parameters `reason` and `detail` unless given."""
    return insert(job_events).from_select(EVENT_COLUMNS, select(
        moved.c.id, bindparam("at", type_=UTCDateTime()),
        literal_column(f"'{move.source.value}'"), literal_column(f"'{move.target.value}'"),
        bindparam("reason", type_=String()) if reason is None else reason,
        moved.c.attempt, bindparam("worker", type_=String()),
        bindparam("detail", type_=JSONB) if detail is None else detail,
    ))


def run_moving(db: Session | Connection, dialect: str, statement: Any, params: dict[str, Any],
               move: Move, reason: str, detail: dict[str, Any] | None,
               queue_literal: bool = False) -> list[Any]:
    """Run a single-source move's UPDATE … RETURNING (id, attempt, …) built by `moving`, and
    log one event per moved row.

    PostgreSQL: one statement, one round trip under autocommit (`queue_literal`: its
    `want_queue` written into the SQL, see `with_queue_literal`). Elsewhere: two statements.
    """
    if dialect == "postgresql":
        compiled = _PG_STATEMENTS.get(statement)
        if compiled is None:
            compiled = _PG_STATEMENTS[statement] = pg_sql(_with_event(statement, move))
        sql, constants = compiled
        if queue_literal:
            sql = with_queue_literal(sql, params["want_queue"])
        bound = pg_params(constants, params)
        bound.update(reason=reason, detail=Jsonb(detail) if detail else None)
        return run_on_driver(db.connection() if isinstance(db, Session) else db, sql, bound)
    rows = list(db.execute(statement, params))
    if rows:
        db.execute(insert(job_events), [
            event(r.id, move.source, move.target, reason, params["at"], r.attempt,
                  params["worker"], detail) for r in rows
        ])
    return rows


_PG_STATEMENTS: dict[Any, tuple[str, dict[str, Any]]] = {}


def run_on_driver(conn: Connection, sql: str, params: Any, many: bool = False) -> list[Any]:
    """Run a pre-built PostgreSQL statement on psycopg's connection itself: its rows by name
    (a statement that returns none must be run `many`, with a sequence of parameter sets;
    a single set goes as one execute, not as a pipeline of one).

    SQLAlchemy builds a result object (column metadata, row processors) on every execution;
    for the statements every job runs, that took more client CPU than the round trip. These
    statements need none of it: their parameters are bound and their rows read as psycopg
    gives them. Errors come out as SQLAlchemy's, a lost connection invalidated, as from
    `exec_driver_sql`, and statement hooks (before_cursor_execute) still see the statement.
    An async session's connection (psycopg's AsyncConnection) takes the ordinary path.
    """
    driver = conn.connection.driver_connection
    if not isinstance(driver, psycopg.Connection):  # an async session's connection
        rows = conn.exec_driver_sql(sql, params)
        return [] if many else list(rows)
    if conn._has_events or conn.engine._has_events:
        conn.dispatch.before_cursor_execute(conn, None, sql, params, None, many)
    try:
        with driver.cursor(row_factory=namedtuple_row) as cursor:
            if many:
                if len(params) == 1:
                    cursor.execute(sql, params[0])
                else:
                    cursor.executemany(sql, params)
                return []
            cursor.execute(sql, params)
            return list(cursor.fetchall())
    except psycopg.Error as exc:
        lost = conn.dialect.is_disconnect(cast(Any, exc), conn.connection, None)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(sql, params, exc, psycopg.Error, connection_invalidated=lost,
                                  dialect=conn.dialect) from exc


_JSON_COLUMNS = frozenset(c.name for c in jobs.c if isinstance(c.type, JSON))


def pg_params(constants: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Driver parameters for a pre-built statement: its constants, then the values, with
    those bound for JSON columns wrapped as psycopg wants them."""
    return {**constants, **{k: Jsonb(v) if k in _JSON_COLUMNS and v is not None else v
                            for k, v in values.items()}}


@cache
def pg_create_statement(columns: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    created = (
        insert(jobs).values({c: bindparam(c, type_=jobs.c[c].type) for c in columns})
        .returning(jobs.c.id, jobs.c.state).cte("created")
    )
    logged = insert(job_events).from_select(EVENT_COLUMNS, select(
        created.c.id, bindparam("at", type_=UTCDateTime()), null(), created.c.state,
        literal_column("'submitted'"), literal_column("0"), null(), null(),
    ))
    return pg_sql(select(created.c.id).add_cte(logged.cte("logged")))
