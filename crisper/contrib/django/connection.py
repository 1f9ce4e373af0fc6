"""Django's own database connection, lent to SQLAlchemy so Crisper's SQL joins its transaction.

SQLAlchemy gets a thin stand-in for Django's psycopg connection whose commit, rollback and
close do nothing: Django's `atomic()` alone decides whether the work commits. Crisper's
statements then run on the very connection, in the very transaction, of the caller.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from alembic import command
from alembic.config import Config
from django.db import connections, transaction
from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import NullPool

from crisper.errors import ConfigurationError
from crisper.store.migrate import MIGRATIONS


class BorrowedConnection:
    """Django's DBAPI connection as SQLAlchemy sees it: everything but ending it."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def commit(self) -> None:
        """Django commits (at the end of its atomic block, or per statement in autocommit)."""

    def rollback(self) -> None:
        """Django rolls back; SQLAlchemy's reset-on-return must not end Django's transaction."""

    def close(self) -> None:
        """The connection is Django's to close."""

    def add_notice_handler(self, handler: Any) -> None:
        """SQLAlchemy adds one on every checkout; Django's connection needs none of ours."""


@cache
def django_engine(using: str = "default") -> Engine:
    """An Engine whose every connection is Django's current connection for alias `using`."""
    wrapper = connections[using]
    if wrapper.vendor != "postgresql":
        raise ConfigurationError(f"database {using!r} is {wrapper.vendor}; Crisper's Django "
                                 "integration needs PostgreSQL")
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    driver = "psycopg" if is_psycopg3 else "psycopg2"

    return create_engine(f"postgresql+{driver}://", creator=lambda: BorrowedConnection(
        _raw(using)), poolclass=NullPool, use_native_hstore=False)


def _raw(using: str) -> Any:
    wrapper = connections[using]
    wrapper.ensure_connection()
    return wrapper.connection


def migrate(using: str = "default") -> None:
    """Bring Crisper's tables to head on Django's database, in one Django transaction."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = django_engine(using)
    with transaction.atomic(using=using):
        command.upgrade(config, "head")
