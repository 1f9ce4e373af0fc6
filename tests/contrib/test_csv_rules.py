"""The CSV import's pure parts: which paths are allowed, how rows are read and validated."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from pydantic import BaseModel, Field, field_validator

from crisper.contrib.csv_source import (
    CsvRows,
    ImportFileError,
    Rejection,
    RowValidator,
    open_in_folder,
    resolve_in_folder,
    save_upload,
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "imports"
    (root / "sub").mkdir(parents=True)
    (root / "a.csv").write_text("x\n")
    (root / "sub" / "b.csv").write_text("x\n")
    (tmp_path / "secret.csv").write_text("x\n")
    (root / "out.csv").symlink_to(tmp_path / "secret.csv")
    (root / "in.csv").symlink_to(root / "a.csv")
    (root / "dirlink").symlink_to(tmp_path)
    return root


@pytest.mark.parametrize("name, allowed", [
    ("a.csv", True),
    ("sub/b.csv", True),
    ("./a.csv", True),
    ("in.csv", True),                 # a link that stays inside
    ("out.csv", False),               # a link that leaves
    ("dirlink/secret.csv", False),    # through a linked directory
    ("../secret.csv", False),
    ("sub/../a.csv", False),          # '..' is refused even when it would stay inside
    ("/etc/passwd", False),
    ("", False),
    ("sub", False),                   # not a regular file
    ("nope.csv", False),
    ("a.csv\x00.txt", False),
    ("..\\secret.csv", False),
])
def test_only_regular_files_inside_the_folder_are_allowed(folder: Path, name: str,
                                                          allowed: bool) -> None:
    if allowed:
        assert resolve_in_folder(folder, name).is_relative_to(folder.resolve())
        with open_in_folder(folder, name) as f:
            assert f.read() == b"x\n"
    else:
        with pytest.raises(ImportFileError):
            resolve_in_folder(folder, name)


def test_an_upload_gets_a_fresh_name_and_a_size_cap(folder: Path) -> None:
    name = save_upload(folder, io.BytesIO(b"sku\nA\n"), max_bytes=100)
    assert name.startswith("uploads/") and (folder / name).read_bytes() == b"sku\nA\n"
    with pytest.raises(ImportFileError, match="larger than 4 bytes"):
        save_upload(folder, io.BytesIO(b"sku\nA\n"), max_bytes=4)
    assert len(os.listdir(folder / "uploads")) == 1  # the refused one is gone


class Row(BaseModel):
    sku: str = Field(min_length=1, pattern=r"^[A-Z0-9-]+$")
    qty: int = Field(ge=0)
    note: str | None = None


def read(data: bytes, model: type[BaseModel] = Row, chunk_rows: int = 2
         ) -> tuple[list[tuple[object, ...]], list[Rejection]]:
    validator = RowValidator(model)
    rows, rejected = [], []
    for chunk in CsvRows(io.BytesIO(data), validator.headers, chunk_rows).chunks():
        rows += validator.validate(chunk)
        rejected += chunk.rejected
    return rows, sorted(rejected, key=lambda r: r.line)


def test_rows_are_validated_per_column_and_rejections_carry_their_first_line() -> None:
    data = (b"\xef\xbb\xbfnote,qty,sku,extra\r\n"   # BOM, CRLF, other order, extra column
            b",1,A-1,x\r\n"                      # 2: note empty -> None
            b"\"two\nlines\",2,A-2,x\r\n"        # 3-4: a quoted field spanning lines
            b"n,-1,A-5,x\r\n"                    # 5: qty below 0
            b"\r\n"                              # 6: blank, skipped
            b"n,3,a 7,x\r\n"                     # 7: sku pattern
            b"n,3\r\n"                           # 8: too few fields
            b"n\xff,4,A-9,x\r\n"                 # 9: bad byte
            b"n\x00,4,A-10,x\r\n"                # 10: NUL
            b"n,5,A-11,x\r\n")                   # 11
    rows, rejected = read(data)
    assert rows == [("A-1", 1, None, 2), ("A-2", 2, "two\nlines", 3), ("A-11", 5, "n", 11)]
    assert [(r.line, r.reason.split(":")[0]) for r in rejected] == [
        (5, "qty"), (7, "sku"), (8, "2 fields, the header has 4"),
        (9, "not valid text in the file's encoding"), (10, "contains a NUL byte")]


class Checked(Row):
    @field_validator("sku")
    @classmethod
    def no_test_skus(cls, value: str) -> str:
        if value.startswith("TEST"):
            raise ValueError("test SKUs are not imported")
        return value


def test_a_model_with_its_own_validators_is_validated_row_by_row() -> None:
    assert RowValidator(Row).by_column and not RowValidator(Checked).by_column
    rows, rejected = read(b"sku,qty,note\nA,1,\nTEST-1,2,x\nB,x,\n", Checked)
    assert rows == [("A", 1, None, 2)]
    assert [(r.line, r.reason) for r in rejected] == [
        (3, "sku: Value error, test SKUs are not imported"),
        (4, "qty: Input should be a valid integer, unable to parse string as an integer")]


@pytest.mark.parametrize("data, message", [
    (b"", "the file is empty"),
    (b"sku,note\nA,x\n", "missing column(s) qty"),
    (b"sku,qty,note,qty\nA,1,x,2\n", "named twice: qty"),
    (b"sku,q\xffty\nA,1\n", "not valid text"),
])
def test_a_bad_header_refuses_the_whole_file(data: bytes, message: str) -> None:
    with pytest.raises(ImportFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read(data)
