"""Built-in job type: import a CSV file into a PostgreSQL table, validated, with COPY.

    from crisper.contrib.csv_import import csv_import

    products = csv_import(crisper, name="shop.import_products", model=ProductRow,
                          table="products", key=("sku",), folder="/srv/imports")
    crisper.submit("shop.import_products", {"path": "uploads/3f2c….csv"})

The table, its columns (the row model's fields) and the natural key are fixed in code; the
submitter only names a file inside `folder`. Consistency is all-or-nothing: every chunk is
copied into a temporary staging table inside one transaction and merged into the table at
the end with INSERT … ON CONFLICT on the key, so a failure, a cancel or a lost worker
midway leaves the table as it was, and a retried or re-run import updates rows instead of
adding them again. See docs/contrib.md.
"""

from __future__ import annotations

import gc
import inspect
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

import psycopg
from psycopg import sql
from psycopg.adapt import Transformer
from pydantic import BaseModel, Field
from sqlalchemy.engine import make_url

from crisper.contrib.copy_text import CopyText
from crisper.contrib.csv_source import (
    CsvRows,
    ImportFileError,
    Rejection,
    RowValidator,
    open_in_folder,
    save_upload,
)
from crisper.durations import Duration
from crisper.errors import ConfigurationError
from crisper.retention import Retention
from crisper.retry import Retry

if TYPE_CHECKING:
    from crisper.app import Crisper
    from crisper.engine.context import JobContext

__all__ = ["CsvImport", "ImportFileError", "Rejection", "csv_import"]

STAGE = "crisper_import_stage"
LINE = "crisper_line"
# The stage is a temporary table: give it room in memory (the default temp_buffers is 8 MB),
# and the duplicate check room to hash its keys. Set for this connection only.
SESSION = "SET temp_buffers = '256MB'; SET work_mem = '64MB'"


class RejectionLog:
    """Every rejected row counted; the `cap` with the lowest line numbers kept for the result."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.count = 0
        self._kept: list[Rejection] = []

    def add(self, rejections: Iterable[Rejection], count: int | None = None) -> None:
        """Keep these; count them, or `count` if only some of them were given."""
        before = len(self._kept)
        self._kept.extend(rejections)
        self.count += len(self._kept) - before if count is None else count
        if len(self._kept) > 2 * self.cap:
            self._kept = sorted(self._kept, key=lambda r: r.line)[: self.cap]

    def kept(self) -> list[Rejection]:
        return sorted(self._kept, key=lambda r: r.line)[: self.cap]


@dataclass(frozen=True)
class CsvImport:
    """One CSV import job type: its file folder, row model, target table and natural key."""

    name: str
    model: type[BaseModel]
    table: tuple[str, ...]
    key: tuple[str, ...]
    folder: Path
    database_url: str
    chunk_rows: int = 10_000
    max_errors: int = 100
    max_bytes: int = 1 << 30
    encoding: str = "utf-8"

    def save_upload(self, stream: BinaryIO) -> str:
        """Store an uploaded file in the folder; answers the `path` to submit."""
        return save_upload(self.folder, stream, self.max_bytes)

    def run(self, ctx: JobContext, path: str) -> dict[str, Any]:
        """The job body: read, validate and stage every chunk, then merge, in one transaction."""
        started = time.monotonic()
        with open_in_folder(self.folder, path) as raw:
            size = raw.seek(0, 2)
            raw.seek(0)
            if size > self.max_bytes:
                raise ImportFileError(f"{path} is larger than {self.max_bytes} bytes")
            validator = RowValidator(self.model)
            rows = CsvRows(raw, validator.headers, self.chunk_rows, self.encoding)
            rejected = RejectionLog(self.max_errors)
            gc_was_enabled = gc.isenabled()
            # Chunks make many short-lived tuples but no cycles; the collector's passes over
            # them cost 15-25 % of the reading and validating CPU. Restored when done.
            gc.disable()
            try:
                with psycopg.connect(self._conninfo()) as conn, conn.cursor() as cur:
                    cur.execute(SESSION)
                    staged, unreadable = self._stage(ctx, cur, rows, validator, rejected,
                                                     size, started)
                    timings = {"stage": time.monotonic() - started}
                    duplicates, duplicated = self._duplicates(cur)
                    rejected.add(duplicates, duplicated)
                    timings["duplicates"] = time.monotonic() - started - timings["stage"]
                    ctx.check_cancelled()  # the last moment a cancel needs no force
                    ctx.progress(size, size, f"{staged} rows staged, merging")
                    inserted, written = self._merge(cur)
                    timings["merge"] = time.monotonic() - started - sum(timings.values())
                timings["commit"] = time.monotonic() - started - sum(timings.values())
            finally:
                if gc_was_enabled:
                    gc.enable()
        seconds = time.monotonic() - started
        valid, total = staged - duplicated, staged + unreadable
        ctx.progress(size, size, f"{total} rows, {rejected.count} rejected")
        result = {
            "path": path, "bytes": size, "rows": total,
            "imported": valid, "inserted": inserted, "updated": written - inserted,
            "unchanged": valid - written, "rejected": rejected.count,
            "errors": [{"line": r.line, "reason": r.reason} for r in rejected.kept()],
            "errors_truncated": rejected.count > self.max_errors,
            "seconds": round(seconds, 3),
            "timings": {k: round(v, 3) for k, v in timings.items()},
            "rows_per_second": round(total / max(seconds, 1e-9)),
        }
        ctx.logger.info("imported %d rows from %s (%d new), rejected %d", valid, path, inserted,
                        rejected.count)
        return result

    def _conninfo(self) -> str:
        url = make_url(self.database_url)
        if url.get_backend_name() not in ("postgresql", "postgres"):
            raise ConfigurationError(f"CSV import {self.name!r} needs PostgreSQL, not "
                                     f"{url.get_backend_name()}")
        return url.set(drivername="postgresql").render_as_string(hide_password=False)

    def _stage(self, ctx: JobContext, cur: psycopg.Cursor[Any], rows: CsvRows,
               validator: RowValidator, rejected: RejectionLog, size: int, started: float
               ) -> tuple[int, int]:
        """Create the staging table and COPY every valid row into it, chunk by chunk:
        (rows staged, rows rejected while reading and validating)."""
        columns = sql.SQL(", ").join(map(sql.Identifier, validator.fields))
        cur.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO "
                            "DATA").format(sql.Identifier(STAGE), columns,
                                           sql.Identifier(*self.table)))
        cur.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} bigint").format(
            sql.Identifier(STAGE), sql.Identifier(LINE)))
        copy_sql = sql.SQL("COPY {} ({}, {}) FROM STDIN").format(
            sql.Identifier(STAGE), columns, sql.Identifier(LINE))
        staged = read_rejections = 0
        # One COPY streams every chunk, so the server stores one chunk while this process
        # reads and validates the next; a cancel between chunks aborts it and rolls back.
        text = CopyText([info.annotation for info in self.model.model_fields.values()],
                        validator.nullable, Transformer(cur.connection))
        with cur.copy(copy_sql) as copy:
            for chunk in rows.chunks():
                values, lines = validator.validate_columns(chunk)
                copy.write(text.format(values, lines))
                staged += len(lines)
                read_rejections += len(chunk.rejected)
                rejected.add(chunk.rejected)
                done = staged + read_rejections
                rate = done / max(time.monotonic() - started, 1e-9)
                ctx.progress(rows.bytes_read, size,
                             f"{done} rows, {rate:.0f} rows/s, {rejected.count} rejected")
                ctx.check_cancelled()
        return staged, read_rejections

    def _key_sql(self) -> sql.Composable:
        return sql.SQL(", ").join(map(sql.Identifier, self.key))

    def _duplicates(self, cur: psycopg.Cursor[Any]) -> tuple[list[Rejection], int]:
        """Later rows repeating an earlier row's key: rejected, and taken out of the stage.
        One hash aggregate finds whether there are any; only then are they looked up."""
        names = {"stage": sql.Identifier(STAGE), "line": sql.Identifier(LINE),
                 "key": self._key_sql()}
        cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {stage} GROUP BY {key} "
                            "HAVING count(*) > 1)").format(**names))
        if not (row := cur.fetchone()) or not row[0]:
            return [], 0
        cur.execute(sql.SQL(
            "WITH gone AS (DELETE FROM {stage} s USING (SELECT {line}, min({line}) OVER "
            "(PARTITION BY {key}) AS first FROM {stage}) d WHERE s.{line} = d.{line} "
            "AND d.{line} > d.first RETURNING s.{line} AS line, d.first) "
            "SELECT line, first, count(*) OVER () FROM gone ORDER BY line LIMIT %s"
        ).format(**names), (self.max_errors,))
        shown = ", ".join(self.key)
        found = cur.fetchall()  # only the first max_errors come back, with the total
        return [Rejection(line, f"duplicate {shown}: the same as line {first}")
                for line, first, _ in found], (found[0][2] if found else 0)

    def _merge(self, cur: psycopg.Cursor[Any]) -> tuple[int, int]:
        """Upsert the staged rows by key: (rows inserted, rows inserted or changed)."""
        fields = RowValidator(self.model).fields
        columns = sql.SQL(", ").join(map(sql.Identifier, fields))
        others = [f for f in fields if f not in self.key]
        if others:
            assign = sql.SQL(", ").join(
                sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(f)) for f in others)
            changed = sql.SQL("({}) IS DISTINCT FROM ({})").format(
                sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(f)) for f in others),
                sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(f))
                                   for f in others))
            action: sql.Composable = sql.SQL("DO UPDATE SET {} WHERE {}").format(assign, changed)
        else:
            action = sql.SQL("DO NOTHING")
        cur.execute(sql.SQL(
            "WITH m AS (INSERT INTO {table} AS t ({columns}) SELECT {columns} FROM {stage} "
            "ON CONFLICT ({key}) {action} RETURNING (xmax = 0) AS inserted) "
            "SELECT count(*) FILTER (WHERE inserted), count(*) FROM m").format(
                table=sql.Identifier(*self.table), columns=columns,
                stage=sql.Identifier(STAGE), key=self._key_sql(), action=action))
        inserted, written = cur.fetchone() or (0, 0)
        return int(inserted), int(written)


def csv_import(crisper: Crisper, *, name: str, model: type[BaseModel], table: str,
               key: Sequence[str], folder: str | Path, database_url: str | None = None,
               queue: str = "default", timeout: Duration | tuple[Duration, Duration] = "1h",
               retry: Retry | None = None,
               chunk_rows: int = 10_000, max_errors: int = 100, max_bytes: int = 1 << 30,
               encoding: str = "utf-8", retention: Retention | Duration | None = None,
               cancel_grace: Duration | None = None) -> CsvImport:
    """Register the job type `name`, taking one parameter, `path` (a file inside `folder`).

    Retries (default: 3 attempts, 30 s back-off) skip what cannot get better: a refused
    file (ImportFileError) or a value the table refuses (psycopg.errors.DataError).

    `table` ("name" or "schema.name") must exist with a column per model field and a unique
    constraint on `key`; `database_url` defaults to the app's own database. `retention` and
    `cancel_grace` are the job type's own (see `Crisper.job`).
    """
    fields = list(model.model_fields)
    unknown = [k for k in key if k not in fields]
    if not key or unknown:
        raise ConfigurationError(f"CSV import {name!r}: the key must name fields of "
                                 f"{model.__name__} ({', '.join(fields)}); got {list(key)}")
    parts = tuple(table.split("."))
    if not 1 <= len(parts) <= 2 or not all(p.isidentifier() for p in parts):
        raise ConfigurationError(f"CSV import {name!r}: table {table!r} is not a table name")
    url = database_url or crisper.settings.resolved_database_url()
    spec = CsvImport(name, model, parts, tuple(key), Path(folder), url, chunk_rows, max_errors,
                     max_bytes, encoding)
    RowValidator(model)  # fail at definition on a model the validator cannot handle

    def import_csv(ctx: JobContext, path: str) -> dict[str, Any]:
        return spec.run(ctx, path)

    path_type = Annotated[str, Field(min_length=1, max_length=1024)]
    import_csv.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("path", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=path_type)])
    import_csv.__doc__ = f"Import a CSV file from the import folder into {table}."
    crisper.job(name=name, queue=queue, timeout=timeout, retention=retention,
                cancel_grace=cancel_grace,
                retry=retry or Retry(attempts=3, backoff="30s",
                                     dont_retry_on=(ImportFileError, psycopg.errors.DataError)))(
                                         import_csv)
    return spec
