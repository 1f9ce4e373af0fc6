"""Validated columns written as COPY text read back from PostgreSQL as the same values."""

from __future__ import annotations

import enum
import ipaddress
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest
from psycopg.adapt import Transformer

from crisper.contrib.copy_text import CopyText
from tests.harness import Backend

pytestmark = pytest.mark.backends("postgres-redis")


class Colour(enum.Enum):
    RED = "red"


COLUMNS = [  # (annotation, nullable, SQL type, values)
    (str, False, "text", ["plain", "tab\there", "new\nline\r\n", "back\\slash", "", "\\N"]),
    (str | None, True, "text", [None, "x", None, "a\tb", "", None]),
    (bool, False, "boolean", [True, False, True, False, True, False]),
    (int, False, "bigint", [0, -1, 2**40, 7, 8, 9]),
    (float, False, "double precision", [0.1, -2.5e-300, 1e300, float("inf"), 3.0, 4.25]),
    (Decimal | None, True, "numeric", [Decimal("12.30"), Decimal("1E+5"), None,
                                       Decimal("-0.001"), Decimal("NaN"), Decimal(0)]),
    (datetime, False, "timestamptz", [
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2026, 6, 1, tzinfo=timezone(-timedelta(hours=7))),
        datetime(2026, 6, 1, 12, tzinfo=UTC)]),
    (date, False, "date", [date(2026, 2, 28), date(1, 1, 1), date(2026, 1, 1),
                           date(2000, 2, 29), date(9999, 12, 31), date(1970, 1, 1)]),
    (time, False, "time", [time(0), time(23, 59, 59, 999999), time(12, 30), time(1),
                           time(2), time(3)]),
    (uuid.UUID, False, "uuid", [uuid.UUID(int=i) for i in range(6)]),
    (Colour, False, "text", [Colour.RED] * 6),
    (ipaddress.IPv4Address, False, "inet", [ipaddress.IPv4Address(f"10.0.0.{i}")
                                             for i in range(6)]),
]


def test_each_type_reads_back_as_the_same_value(backend: Backend) -> None:
    url = backend.settings.database_url
    assert url is not None
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SET TimeZone = 'UTC'")
        names = [f"c{i}" for i in range(len(COLUMNS))]
        cur.execute("CREATE TEMP TABLE t (" + ", ".join(
            f"{n} {c[2]}" for n, c in zip(names, COLUMNS, strict=True)) + ", line bigint)")
        text = CopyText([c[0] for c in COLUMNS], [c[1] for c in COLUMNS], Transformer(conn))
        block = text.format([list(c[3]) for c in COLUMNS], [2, 3, 5, 6, 7, 9])
        with cur.copy(f"COPY t ({', '.join(names)}, line) FROM STDIN") as copy:
            copy.write(block)
        cur.execute(f"SELECT {', '.join(names)}, line FROM t ORDER BY line")
        got = list(zip(*cur.fetchall(), strict=True))
    for (annotation, _, _, values), read in zip(COLUMNS, got[:-1], strict=True):
        if annotation is Colour:
            values = [v.value for v in values]
        if annotation is ipaddress.IPv4Address:
            read = tuple(ipaddress.IPv4Address(str(v)) for v in read)
        if annotation == Decimal | None:  # NaN is not equal to itself
            assert str(read[4]) == "NaN"
            values, read = values[:4] + values[5:], read[:4] + read[5:]
        assert list(read) == values, annotation
    assert list(got[-1]) == [2, 3, 5, 6, 7, 9]


def test_no_rows_is_no_text() -> None:
    assert CopyText([str], [False], Transformer()).format([[]], []) == ""
