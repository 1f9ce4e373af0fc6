"""The shared machinery of job statements: events, and the PostgreSQL fast path in one place."""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import cache
from typing import Any, cast

from psycopg.types.json import Jsonb
from sqlalchemy import JSON, CursorResult, String, bindparam, insert, literal_column, null, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from crisper.records import JobRecord
from crisper.states import JobState
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
    return {
        "job_id": job_id, "at": at, "from_state": source.value if source else None,
        "to_state": target.value, "reason": reason, "attempt": attempt, "worker": worker,
        "detail": detail,
    }


def dialect_of(db: Session | Connection) -> str:
    return (db.get_bind() if isinstance(db, Session) else db).dialect.name


def pg_sql(statement: Any) -> tuple[str, dict[str, Any]]:
    """A Core statement compiled once for psycopg, with its constant parameters.

    Building and cache-keying Core statements costs more CPU per job than the database work
    itself, so the two statements every job runs are built once, from the same definitions
    the portable path uses, and run with exec_driver_sql.
    """
    compiled = statement.compile(dialect=_PG_DIALECT)
    return str(compiled), dict(compiled.params)


_PG_DIALECT = postgresql.psycopg.dialect()
EVENT_COLUMNS = ["job_id", "at", "from_state", "to_state", "reason", "attempt", "worker",
                  "detail"]


def _with_event(moving: Any, source: JobState, target: JobState) -> Any:
    """PostgreSQL: the UPDATE … RETURNING and its event INSERT as one data-modifying CTE."""
    moved = moving.cte("moved")
    logged = insert(job_events).from_select(EVENT_COLUMNS, select(
        moved.c.id, bindparam("at", type_=UTCDateTime()), literal_column(f"'{source.value}'"),
        literal_column(f"'{target.value}'"), bindparam("reason", type_=String()),
        moved.c.attempt, bindparam("worker", type_=String()), bindparam("detail", type_=JSONB),
    ))
    return select(moved).add_cte(logged.cte("logged"))


def run_moving(db: Session | Connection, dialect: str, moving: Any, params: dict[str, Any],
               source: JobState, target: JobState, reason: str, detail: dict[str, Any] | None
               ) -> list[Any]:
    """Run a conditional UPDATE … RETURNING (id, attempt, …) and log one event per moved row.

    PostgreSQL: one statement, one round trip under autocommit. Elsewhere: two statements.
    """
    if dialect == "postgresql":
        compiled = _PG_STATEMENTS.get(moving)
        if compiled is None:
            compiled = _PG_STATEMENTS[moving] = pg_sql(_with_event(moving, source, target))
        sql, constants = compiled
        bound = pg_params(constants, params)
        bound.update(reason=reason, detail=Jsonb(detail) if detail else None)
        conn = db.connection() if isinstance(db, Session) else db
        return list(conn.exec_driver_sql(sql, bound))
    rows = list(db.execute(moving, params))
    if rows:
        db.execute(insert(job_events), [
            event(r.id, source, target, reason, params["at"], r.attempt, params["worker"], detail)
            for r in rows
        ])
    return rows


_PG_STATEMENTS: dict[Any, tuple[str, dict[str, Any]]] = {}


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
