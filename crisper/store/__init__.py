"""The store: the SQL database that is the truth about every job."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from crisper.store.db import make_engine, session_factory, translate_errors


def utcnow() -> datetime:
    return datetime.now(UTC)


class Store:
    """One database: an engine and the transactions Crisper runs on it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = make_engine(url)
        self._sessions = session_factory(self.engine)
        self._autocommit_engine: Engine | None = None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits at the end of the block, or rolls back on error."""
        with translate_errors(), self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """A connection whose statements commit one by one: for steps that are one statement.

        On PostgreSQL this saves BEGIN and COMMIT round trips, and it skips the pool's
        pre-ping (a dropped connection surfaces as StoreUnavailable, like any outage).
        Elsewhere it is an ordinary transaction.
        """
        if self.dialect != "postgresql":
            with translate_errors(), self.engine.begin() as conn:
                yield conn
            return
        with translate_errors(), self._autocommit_engine_made().connect() as conn:
            yield conn

    def held_autocommit(self) -> HeldConnection:
        """An `autocommit` connection to keep across a chain of one-statement steps."""
        return HeldConnection(self)

    def _autocommit_engine_made(self) -> Engine:
        if self._autocommit_engine is None:
            self._autocommit_engine = make_engine(self.url, autocommit=True)
        return self._autocommit_engine

    @contextmanager
    def read(self) -> Iterator[Session]:
        with translate_errors(), self._sessions() as session:
            yield session

    def create_all(self) -> None:
        """Bring the schema up to date through the migrations."""
        from crisper.store.migrate import upgrade

        with translate_errors():
            upgrade(self)

    def close(self) -> None:
        """Close every pooled connection (at shutdown, and between tests)."""
        self.engine.dispose()
        if self._autocommit_engine is not None:
            self._autocommit_engine.dispose()

    def dispose(self) -> None:
        """Drop pooled connections (after fork, or at shutdown)."""
        self.engine.dispose(close=False)
        if self._autocommit_engine is not None:
            self._autocommit_engine.dispose(close=False)


class HeldConnection:
    """One autocommit connection for a chain of one-statement steps on one thread: a worker
    slot's claims and outcomes during one wake-up then pay one pool checkout and check-in,
    not one per statement (about 8 % of the slot's CPU per no-op job).

    A step that fails lets the connection go, so that the next step takes a fresh one, as
    it would from the pool; `release` gives it back. Off PostgreSQL each step is an ordinary
    `autocommit` block (SQLite opens a connection per transaction anyway).
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._conn: Connection | None = None

    @contextmanager
    def step(self) -> Iterator[Connection]:
        if self._store.dialect != "postgresql":
            with self._store.autocommit() as conn:
                yield conn
            return
        with translate_errors():
            if self._conn is None:
                self._conn = self._store._autocommit_engine_made().connect()
            try:
                yield self._conn
            except BaseException:
                self.release()
                raise

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(Exception):  # a dead connection is only dropped
                conn.close()


__all__ = ["HeldConnection", "Store", "utcnow"]
