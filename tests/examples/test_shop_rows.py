"""The shop example's CSV reading: every bad row is named by its line, good rows go on."""

from __future__ import annotations

import io

import pytest
from shop.jobs import BadFile, CountingLines, Product, RowError, read_products


def rows(text: str) -> list[Product | RowError]:
    return list(read_products(text.splitlines(keepends=True), "p.csv"))


def test_bad_rows_are_reported_by_line_and_the_good_ones_kept() -> None:
    got = rows('sku,name,price\n'
               'A-1,Mug,4.50\n'
               'A-2,Plate,-1\n'               # line 3: negative price
               'A-3,"Bowl, large",abc\n'      # line 4: not a number
               ',Nameless,1\n'                # line 5: empty sku
               'A-4,Cup,1,extra\n'            # line 6: a field too many
               'A-5,"Two\nline name",2.00\n'  # lines 7-8: one row
               'A-6,Jug,3.999\n')             # line 9: three decimals
    assert [p.sku for p in got if isinstance(p, Product)] == ["A-1", "A-5"]
    assert [(e.line, e.field) for e in got if isinstance(e, RowError)] == [
        (3, "price"), (4, "price"), (5, "sku"), (6, "-"), (9, "price")]
    sixth = next(e for e in got if isinstance(e, RowError) and e.line == 6)
    assert sixth.message == "4 fields, the header names 3"


@pytest.mark.parametrize("header", ["sku,name\n", "SKU;name;price\n", ""])
def test_a_file_without_the_needed_columns_is_refused_naming_them(header: str) -> None:
    with pytest.raises(BadFile, match="p.csv line 1: missing column"):
        rows(header + "A-1,Mug,4.50\n")


def test_counting_lines_strips_the_byte_order_mark_and_counts_bytes() -> None:
    raw = "\ufeffsku,name,price\r\nA-1,Mugé,1\r\n".encode()
    lines = CountingLines(io.BytesIO(raw))
    assert [p.name for p in read_products(lines) if isinstance(p, Product)] == ["Mugé"]
    assert lines.bytes == len(raw)
