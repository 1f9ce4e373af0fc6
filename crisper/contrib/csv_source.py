"""Reading a submitted CSV safely: files confined to one folder, streamed rows, fast validation.

The submitter of an import is whoever holds a write key, so the path and the bytes are
hostile: a path may only name a regular file inside the configured folder (checked on the
resolved path and again on the opened descriptor), and every row is validated before it
goes near the database. Rows are read and validated a chunk at a time, so memory stays flat
however large the file is (repeated keys are found in PostgreSQL, see csv_import.SeenKeys).
"""

from __future__ import annotations

import csv
import io
import operator
import os
import stat
import types
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, BinaryIO, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

UPLOADS = "uploads"


class ImportFileError(ValueError):
    """The file cannot be imported at all; trying again will not help."""


@dataclass(frozen=True)
class Rejection:
    """One rejected row: its first line in the file (the header is line 1) and why."""

    line: int
    reason: str


def resolve_in_folder(folder: Path, name: str) -> Path:
    """The file `name` (relative, inside `folder`) resolved; ImportFileError otherwise.

    Refused: empty, absolute or drive paths, NUL bytes, any `..` part, and anything whose
    resolved path (symbolic links followed) leaves the folder or is not a regular file.
    """
    if not name or "\x00" in name or "\\" in name:
        raise ImportFileError(f"path {name!r} is not a file name inside the import folder")
    parts = PurePosixPath(name)
    if parts.is_absolute() or ".." in parts.parts:
        raise ImportFileError(
            f"path {name!r} must be relative to the import folder, without '..'")
    root = folder.resolve(strict=True)
    try:
        target = (root / parts).resolve(strict=True)
    except (FileNotFoundError, RuntimeError):  # missing, or a symbolic link loop
        raise ImportFileError(f"no such file in the import folder: {name}") from None
    if not target.is_relative_to(root):
        raise ImportFileError(f"path {name!r} leads outside the import folder")
    if not target.is_file():
        raise ImportFileError(f"{name} is not a regular file")
    return target


def open_in_folder(folder: Path, name: str) -> BinaryIO:
    """Open `name` for reading, re-checking the opened file itself (a link swapped in between
    the check and the open is caught: the descriptor's own path must still be inside)."""
    target = resolve_in_folder(folder, name)
    fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    try:
        real = Path(os.readlink(f"/proc/self/fd/{fd}")) if Path("/proc/self/fd").is_dir() \
            else target
        if not real.is_relative_to(folder.resolve()) or not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImportFileError(f"path {name!r} leads outside the import folder")
        return os.fdopen(fd, "rb", buffering=1 << 20)
    except BaseException:
        os.close(fd)
        raise


def save_upload(folder: Path, stream: BinaryIO, max_bytes: int) -> str:
    """Store an uploaded file under `folder/uploads/` with a fresh name; answers the name to
    submit as the import's `path`. The client's own file name is never used."""
    target_dir = folder / UPLOADS
    target_dir.mkdir(parents=True, exist_ok=True)
    name = f"{UPLOADS}/{uuid.uuid4().hex}.csv"
    written = 0
    with (folder / name).open("xb") as out:
        while block := stream.read(1 << 20):
            written += len(block)
            if written > max_bytes:
                out.close()
                (folder / name).unlink()
                raise ImportFileError(f"the upload is larger than {max_bytes} bytes")
            out.write(block)
    return name


@dataclass
class Chunk:
    """Rows read since the last chunk: their first line numbers and raw cells, in the order of
    the row model's fields; plus the rows refused while reading them."""

    lines: list[int] = field(default_factory=list)
    rows: list[Sequence[str]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    columns: list[tuple[str, ...]] | None = None  # `rows` transposed, once screened clean


class CsvRows:
    """Streams a CSV file's data rows in chunks, picking the model's columns by header name."""

    def __init__(self, raw: BinaryIO, columns: Sequence[str], chunk_rows: int,
                 encoding: str = "utf-8") -> None:
        self.raw = raw
        self.columns = list(columns)
        self.chunk_rows = chunk_rows
        self.encoding = encoding

    @property
    def bytes_read(self) -> int:
        return self.raw.tell()

    def _picker(self, header: list[str]) -> Callable[[list[str]], tuple[str, ...]]:
        names = [h.strip() for h in header]
        missing = [c for c in self.columns if c not in names]
        if missing:
            raise ImportFileError(f"line 1: missing column(s) {', '.join(missing)}; the header "
                                  f"must name {', '.join(self.columns)}")
        repeated = sorted({n for n in names if n in self.columns and names.count(n) > 1})
        if repeated:
            raise ImportFileError(f"line 1: column(s) named twice: {', '.join(repeated)}")
        if len(self.columns) == 1:
            index = names.index(self.columns[0])
            return lambda row: (row[index],)
        return operator.itemgetter(*(names.index(c) for c in self.columns))  # type: ignore[return-value]

    def chunks(self) -> Iterator[Chunk]:
        """Chunks of at most `chunk_rows` well-formed rows; ImportFileError for a bad header."""
        encoding = "utf-8-sig" if self.encoding.lower().replace("_", "-") == "utf-8" \
            else self.encoding
        # Undecodable bytes become lone surrogates, found per chunk (one C call) in _screen.
        text = io.TextIOWrapper(self.raw, encoding, errors="surrogateescape", newline="")
        reader = csv.reader(text, strict=False)
        try:
            header = next(reader)
        except StopIteration:
            raise ImportFileError("the file is empty; line 1 must be the header") from None
        except csv.Error as exc:
            raise ImportFileError(f"line 1: {exc}") from None
        if _unclean("".join(header)):
            raise ImportFileError(f"line 1: {_unclean(''.join(header))}")
        pick, width = self._picker(header), len(header)
        chunk, last, size = Chunk(), reader.line_num, self.chunk_rows
        while True:  # a tight loop: this runs once per row of the file
            try:
                for row in reader:
                    first, last = last + 1, reader.line_num
                    if len(row) != width:
                        _misshapen(chunk, row, first, width)
                        continue
                    chunk.lines.append(first)
                    chunk.rows.append(row)
                    if len(chunk.rows) >= size:
                        yield _screen(chunk, pick)
                        chunk = Chunk()
                break
            except csv.Error as exc:  # that row is rejected; the reader goes on after it
                chunk.rejected.append(Rejection(last + 1, f"not readable as CSV: {exc}"))
                last = reader.line_num
        yield _screen(chunk, pick)


def _misshapen(chunk: Chunk, row: list[str], line: int, width: int) -> None:
    """A row with the wrong number of fields is rejected; a blank line is no row at all."""
    if row:
        chunk.rejected.append(Rejection(
            line, f"{len(row)} fields, the header has {width}: missing columns"
            if len(row) < width else f"{len(row)} fields, the header has {width}"))


def _unclean(text: str) -> str | None:
    """Why text read from the file cannot be stored: undecodable bytes, or a NUL."""
    if "\x00" in text:
        return "contains a NUL byte"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid text in the file's encoding"
    return None


def _screen(chunk: Chunk, pick: Callable[[list[str]], tuple[str, ...]]) -> Chunk:
    """Keep the model's columns of each row (one C-level map); reject rows with undecodable
    bytes or NULs: one check per chunk over its columns (a join per column, not per row),
    per row only if needed."""
    chunk.rows = list(map(pick, chunk.rows))  # type: ignore[arg-type]
    columns = list(zip(*chunk.rows, strict=True))
    if not _unclean("".join(["".join(c) for c in columns])):
        chunk.columns = columns
    else:
        keep = []
        for i, row in enumerate(chunk.rows):
            reason = _unclean("".join(row))
            if reason:
                chunk.rejected.append(Rejection(chunk.lines[i], reason))
            else:
                keep.append(i)
        chunk.lines = [chunk.lines[i] for i in keep]
        chunk.rows = [chunk.rows[i] for i in keep]
    return chunk


def _field_type(info: FieldInfo) -> Any:
    """A model field's type with its constraints (max_length, ge, pattern…) attached."""
    if info.metadata:
        return Annotated[(info.annotation, *info.metadata)]  # type: ignore[misc]
    return info.annotation


def _allows_none(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _allows_none(get_args(annotation)[0])
    return (origin is Union or origin is types.UnionType) and type(None) in get_args(annotation)


class RowValidator:
    """Validates a chunk's cells against a pydantic row model, fast.

    Fast path (a model without validators of its own): one TypeAdapter per column over the
    whole chunk, so pydantic-core loops in Rust and no model object is built per row. A
    model with field or model validators is validated row by row as models (slower, exact).
    An empty cell is None for a field that allows None.
    """

    def __init__(self, model: type[BaseModel]) -> None:
        self.model = model
        self.fields = list(model.model_fields)
        self.headers = [info.alias or name for name, info in model.model_fields.items()]
        decorators = model.__pydantic_decorators__
        self.by_column = not (decorators.field_validators or decorators.model_validators
                              or decorators.validators or decorators.root_validators)
        config = ConfigDict(**{k: v for k, v in model.model_config.items()  # type: ignore[typeddict-item]
                               if k.startswith(("str_", "strict", "ser_", "coerce"))})
        self.nullable = [_allows_none(info.annotation) for info in model.model_fields.values()]
        self.adapters: list[TypeAdapter[list[Any]]] = [
            TypeAdapter(list[_field_type(info)], config=config)  # type: ignore[misc,arg-type]
            for info in model.model_fields.values()]

    def validate(self, chunk: Chunk) -> list[tuple[Any, ...]]:
        """The valid rows as value tuples ending with their line number; the others go to
        chunk.rejected."""
        columns, lines = self.validate_columns(chunk)
        return list(zip(*columns, lines, strict=True))

    def validate_columns(self, chunk: Chunk) -> tuple[list[list[Any]], list[int]]:
        """The valid rows' values, a list per field, and their line numbers; the others go to
        chunk.rejected."""
        if not chunk.rows:
            return [[] for _ in self.fields], []
        if not self.by_column:
            rows = self._by_row(chunk)
            return [list(c) for c in zip(*(r[:-1] for r in rows), strict=True)] \
                or [[] for _ in self.fields], [r[-1] for r in rows]
        columns = [list(c) for c in (chunk.columns or zip(*chunk.rows, strict=True))]
        for i, values in enumerate(columns):
            if self.nullable[i]:
                columns[i] = [v or None for v in values]  # type: ignore[misc]
        bad: dict[int, str] = {}
        results: list[list[Any] | None] = []
        for name, adapter, values in zip(self.headers, self.adapters, columns, strict=True):
            try:
                results.append(adapter.validate_python(values))
            except ValidationError as exc:
                results.append(None)
                for err in exc.errors(include_url=False):
                    bad.setdefault(int(err["loc"][0]), f"{name}: {err['msg']}")
        if not bad:
            return results, chunk.lines  # type: ignore[return-value]
        # validate the failed columns again without the rejected rows
        keep = [i for i in range(len(chunk.rows)) if i not in bad]
        valid = [[r[i] for i in keep] if r is not None
                 else adapter.validate_python([columns[c][i] for i in keep])
                 for c, (r, adapter) in enumerate(zip(results, self.adapters, strict=True))]
        chunk.rejected.extend(Rejection(chunk.lines[i], bad[i]) for i in sorted(bad))
        return valid, [chunk.lines[i] for i in keep]

    def _by_row(self, chunk: Chunk) -> list[tuple[Any, ...]]:
        rows = []
        for line, cells in zip(chunk.lines, chunk.rows, strict=True):
            data = {h: (c or None) if n else c
                    for h, c, n in zip(self.headers, cells, self.nullable, strict=True)}
            try:
                row = self.model.model_validate(data)
            except ValidationError as exc:
                err = exc.errors(include_url=False)[0]
                where = ".".join(str(p) for p in err["loc"]) or "row"
                chunk.rejected.append(Rejection(line, f"{where}: {err['msg']}"))
                continue
            rows.append((*(getattr(row, f) for f in self.fields), line))
        return rows
