"""Built-in job type: import a CSV file into a PostgreSQL table, validated, with COPY.

    from crisper.contrib.csv_import import csv_import

    products = csv_import(crisper, name="shop.import_products", model=ProductRow,
                          table="products", key=("sku",), folder="/srv/imports")
    crisper.submit("shop.import_products", {"path": "uploads/3f2c….csv"})

The table, its columns (the row model's fields) and the natural key are fixed in code; the
submitter only names a file inside `folder`. Consistency is all-or-nothing: a loader thread
copies each chunk into a temporary staging table and, every 50,000 rows, takes out the rows
repeating a key seen earlier in the file (a temporary table of the keys seen) and merges the
rest into the table with INSERT … ON CONFLICT on the key, while the next chunks are read,
all inside one transaction committed after the last chunk, so a failure, a cancel or a lost
worker midway leaves the table as it was, and a retried or re-run import updates rows
instead of adding them again.
See docs/contrib.md.
"""

from __future__ import annotations

import gc
import inspect
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
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
SEEN = "crisper_import_seen"
LINE = "crisper_line"  # each staged row's line in the file
# The stage is a temporary table holding one chunk at a time: keep a large `chunk_rows` in
# memory too (the default temp_buffers is 8 MB). Set for this connection only.
SESSION = "SET temp_buffers = '64MB'"
# Rows read, validated and formatted at a time: what the worker holds in memory per chunk.
CHUNK_ROWS = 20_000
# Chunks formatted but not yet stored: the reading side stays this far ahead at most.
AHEAD = 2
# Rows staged before they are screened and merged: each merge (and the TRUNCATE after it) has
# a fixed cost, so the stage gathers several chunks first; it lives in PostgreSQL, not in
# the worker's memory. 500k rows: 5.5 s merging every 10,000, 4.5 s every 50,000.
MERGE_ROWS = 50_000


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


@dataclass
class Counts:
    """Rows stored so far: valid rows merged, of which inserted, and inserted or changed."""

    valid: int = 0
    inserted: int = 0
    written: int = 0


@dataclass
class SeenKeys:
    """Finds rows repeating a key seen earlier in the file, in PostgreSQL, so the worker's
    memory stays flat however many keys the file holds.

    A temporary table holds each distinct key once, with the line where it first came, under
    a unique constraint like the target's (NULL keys never repeat). Each chunk's staged keys
    go in lowest line first; only if some conflicted (an earlier chunk's key, or an earlier
    line of this chunk) are the repeating rows looked up, reported and taken out of the stage.
    """

    cur: psycopg.Cursor[Any]
    key: tuple[str, ...]
    rejected: RejectionLog

    def __post_init__(self) -> None:
        names = {"stage": sql.Identifier(STAGE), "seen": sql.Identifier(SEEN),
                 "line": sql.Identifier(LINE),
                 "key": sql.SQL(", ").join(map(sql.Identifier, self.key)),
                 "same": sql.SQL(" AND ").join(sql.SQL("f.{k} = s.{k}").format(
                     k=sql.Identifier(k)) for k in self.key)}
        self.insert_sql = sql.SQL(
            "INSERT INTO {seen} ({key}, {line}) SELECT {key}, {line} FROM {stage} "
            "ORDER BY {line} ON CONFLICT DO NOTHING").format(**names)
        first = sql.SQL("(SELECT f.{line} FROM {seen} f WHERE {same})").format(**names)
        # a subquery per row probes the key's index; a join would scan the whole table
        self.remove_sql = sql.SQL(
            "WITH gone AS (DELETE FROM {stage} s WHERE s.{line} <> {first} "
            "RETURNING s.{line} AS line, {first} AS first) "
            "SELECT line, first, count(*) OVER () FROM gone ORDER BY line LIMIT %s"
        ).format(first=first, **names)
        self.shown = ", ".join(self.key)

    @classmethod
    def create(cls, cur: psycopg.Cursor[Any], table: tuple[str, ...], key: tuple[str, ...],
               cap: int) -> SeenKeys:
        """The table of keys seen, shaped like the target's key columns, dropped at commit."""
        names = {"seen": sql.Identifier(SEEN), "line": sql.Identifier(LINE),
                 "key": sql.SQL(", ").join(map(sql.Identifier, key))}
        cur.execute(sql.SQL("CREATE TEMP TABLE {seen} ON COMMIT DROP AS SELECT {key} FROM {table} "
                            "WITH NO DATA").format(table=sql.Identifier(*table), **names))
        cur.execute(sql.SQL("ALTER TABLE {seen} ADD COLUMN {line} integer NOT NULL, "
                            "ADD UNIQUE ({key})").format(**names))
        return cls(cur, key, RejectionLog(cap))

    def screen(self, rows: int) -> int:
        """Note the staged chunk's keys; take out (and report) the rows repeating one.
        Answers how many were taken out."""
        self.cur.execute(self.insert_sql)
        if self.cur.rowcount == rows:
            return 0
        self.cur.execute(self.remove_sql, (self.rejected.cap,))
        found = self.cur.fetchall()  # only the first `cap` come back, with the total
        self.rejected.add([Rejection(line, f"duplicate {self.shown}: the same as line {first}")
                           for line, first, _ in found], found[0][2] if found else 0)
        return found[0][2] if found else 0


@dataclass
class ChunkLoader:
    """Stores chunks on a thread of its own: COPY each into the stage; once `merge_rows` are
    staged (and after the last chunk), take out the rows repeating a key seen before (`keys`),
    merge, empty the stage.

    PostgreSQL parses the COPY and runs the key check and the merge in its own process;
    while this thread waits for it (without the GIL), the job's thread reads and validates
    the next chunk, so both cores work. Everything runs in the connection's one transaction:
    a failure or a cancel anywhere rolls all of it back. The thread's error is raised in the
    job's thread.
    """

    cur: psycopg.Cursor[Any]
    copy_sql: sql.Composed
    merge_sql: sql.Composed
    keys: SeenKeys | None = None  # rows repeating a key are taken out before the merge
    merge_rows: int = MERGE_ROWS  # rows staged (whole chunks) before each merge
    counts: Counts = field(default_factory=Counts)
    error: BaseException | None = None
    waited: float = 0.0  # the job's thread, waiting for the database (the queue full)
    idle: float = 0.0  # this thread, waiting for the job's thread (the queue empty)
    _queue: queue.Queue[tuple[str, int] | None] = field(
        default_factory=lambda: queue.Queue(maxsize=AHEAD))
    _stopping: bool = False
    _thread: threading.Thread | None = None

    def put(self, text: str, rows: int) -> None:
        """Hand a chunk's COPY text over; waits while AHEAD chunks are waiting already."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="csv-import-loader",
                                            daemon=True)
            self._thread.start()
        began = time.monotonic()
        while True:
            self._raise()
            try:
                self._queue.put((text, rows), timeout=0.05)
                self.waited += time.monotonic() - began
                return
            except queue.Full:
                continue

    def finish(self) -> Counts:
        """Wait until every chunk is stored; answers the counts."""
        began = time.monotonic()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
        self.waited += time.monotonic() - began
        self._raise()
        return self.counts

    def stop(self) -> None:
        """Let the thread end after the statement it runs (the caller then rolls back)."""
        self._stopping = True
        if self._thread is not None:
            while self._thread.is_alive():
                try:
                    self._queue.put_nowait(None)
                except queue.Full:
                    self._drain()
                self._thread.join(0.05)

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def _drain(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    def _next(self) -> tuple[str, int] | None:
        began = time.monotonic()
        item = self._queue.get()
        self.idle += time.monotonic() - began
        return item

    def _run(self) -> None:
        staged = 0
        try:
            while not self._stopping and (item := self._next()) is not None:
                text, rows = item
                if text:
                    with self.cur.copy(self.copy_sql) as copy:
                        copy.write(text)
                    staged += rows
                if staged >= self.merge_rows:
                    self._merge(staged)
                    staged = 0
            if staged and not self._stopping:
                self._merge(staged)
        except BaseException as exc:  # raised again in the job's thread
            self.error = exc

    def _merge(self, rows: int) -> None:
        """Screen the staged rows for repeated keys, merge the rest, empty the stage."""
        if self.keys is not None:
            rows -= self.keys.screen(rows)
        self.cur.execute(self.merge_sql)
        inserted, written = self.cur.fetchone() or (0, 0)
        self.counts.inserted += int(inserted)
        self.counts.written += int(written)
        self.counts.valid += rows


@dataclass(frozen=True)
class CsvImport:
    """One CSV import job type: its file folder, row model, target table and natural key."""

    name: str
    model: type[BaseModel]
    table: tuple[str, ...]
    key: tuple[str, ...]
    folder: Path
    database_url: str
    chunk_rows: int = CHUNK_ROWS
    max_errors: int = 100
    max_bytes: int = 1 << 30
    encoding: str = "utf-8"

    def save_upload(self, stream: BinaryIO) -> str:
        """Store an uploaded file in the folder; answers the `path` to submit."""
        return save_upload(self.folder, stream, self.max_bytes)

    def run(self, ctx: JobContext, path: str) -> dict[str, Any]:
        """The job body: read, validate, stage and merge every chunk, in one transaction."""
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
                    loader = self._load(ctx, cur, rows, validator, rejected, size, started)
                    timings = {"load": time.monotonic() - started}
                timings["commit"] = time.monotonic() - started - timings["load"]
                # which side held the other up: the reading waiting for the database, or
                # the database for the reading
                timings["reading_waited"], timings["database_waited"] = loader.waited, \
                    loader.idle
                counts = loader.counts
            finally:
                if gc_was_enabled:
                    gc.enable()
        seconds = time.monotonic() - started
        total = counts.valid + rejected.count
        ctx.progress(size, size, f"{total} rows, {rejected.count} rejected")
        result = {
            "path": path, "bytes": size, "rows": total,
            "imported": counts.valid, "inserted": counts.inserted,
            "updated": counts.written - counts.inserted,
            "unchanged": counts.valid - counts.written, "rejected": rejected.count,
            "errors": [{"line": r.line, "reason": r.reason} for r in rejected.kept()],
            "errors_truncated": rejected.count > self.max_errors,
            "seconds": round(seconds, 3),
            "timings": {k: round(v, 3) for k, v in timings.items()},
            "rows_per_second": round(total / max(seconds, 1e-9)),
        }
        ctx.logger.info("imported %d rows from %s (%d new), rejected %d", counts.valid, path,
                        counts.inserted, rejected.count)
        return result

    def _conninfo(self) -> str:
        url = make_url(self.database_url)
        if url.get_backend_name() not in ("postgresql", "postgres"):
            raise ConfigurationError(f"CSV import {self.name!r} needs PostgreSQL, not "
                                     f"{url.get_backend_name()}")
        return url.set(drivername="postgresql").render_as_string(hide_password=False)

    def _load(self, ctx: JobContext, cur: psycopg.Cursor[Any], rows: CsvRows,
              validator: RowValidator, rejected: RejectionLog, size: int, started: float
              ) -> ChunkLoader:
        """Read and validate here while the loader thread stages, checks for repeated keys
        and merges the previous chunk, so this process and PostgreSQL's work at once."""
        fields = validator.fields
        text = CopyText([info.annotation for info in self.model.model_fields.values()],
                        validator.nullable, Transformer(cur.connection))
        keys = SeenKeys.create(cur, self.table, self.key, self.max_errors)
        loader = ChunkLoader(cur, *self._statements(cur, fields), keys=keys)
        handed = 0
        try:
            for chunk in rows.chunks():
                values, lines = validator.validate_columns(chunk)
                loader.put(text.format(values, lines), len(lines))
                handed += len(lines)
                rejected.add(chunk.rejected)
                done = handed + rejected.count
                rate = done / max(time.monotonic() - started, 1e-9)
                ctx.progress(rows.bytes_read, size, f"{done} rows, {rate:.0f} rows/s, "
                             f"{rejected.count + keys.rejected.count} rejected")
                ctx.check_cancelled()
            ctx.progress(size, size, "merging the last chunk")
            loader.finish()
            rejected.add(keys.rejected.kept(), keys.rejected.count)
            return loader
        finally:
            loader.stop()

    def _statements(self, cur: psycopg.Cursor[Any], fields: list[str]
                    ) -> tuple[sql.Composed, sql.Composed]:
        """Create the staging table (the columns and each row's line); answer the COPY into
        it and the merge that empties it."""
        columns = sql.SQL(", ").join(map(sql.Identifier, fields))
        stage, line = sql.Identifier(STAGE), sql.Identifier(LINE)
        cur.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {}, 0 AS {} FROM {} "
                            "WITH NO DATA").format(stage, columns, line,
                                                   sql.Identifier(*self.table)))
        return (sql.SQL("COPY {} ({}, {}) FROM STDIN").format(stage, columns, line),
                self._merge_sql(fields) + sql.SQL("; TRUNCATE {}").format(stage))

    def _merge_sql(self, fields: list[str]) -> sql.Composed:
        """Upsert the staged rows by key, answering (rows inserted, rows inserted or changed)."""
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
        return sql.SQL(
            "WITH m AS (INSERT INTO {table} AS t ({columns}) SELECT {columns} FROM {stage} "
            "ON CONFLICT ({key}) {action} RETURNING (xmax = 0) AS inserted) "
            "SELECT count(*) FILTER (WHERE inserted), count(*) FROM m").format(
                table=sql.Identifier(*self.table), columns=columns,
                stage=sql.Identifier(STAGE),
                key=sql.SQL(", ").join(map(sql.Identifier, self.key)), action=action)


def csv_import(crisper: Crisper, *, name: str, model: type[BaseModel], table: str,
               key: Sequence[str], folder: str | Path, database_url: str | None = None,
               queue: str = "default", timeout: Duration | tuple[Duration, Duration] = "1h",
               retry: Retry | None = None,
               chunk_rows: int = CHUNK_ROWS, max_errors: int = 100, max_bytes: int = 1 << 30,
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
