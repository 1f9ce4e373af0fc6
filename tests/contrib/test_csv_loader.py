"""The CSV import's loader thread against real PostgreSQL: chunks merged in order inside the
caller's transaction, a refused chunk's error raised in the caller's thread with its type,
rows repeating a key taken out by PostgreSQL and reported with the key's first line."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from crisper.contrib.csv_import import LINE, MERGE_ROWS, STAGE, ChunkLoader, SeenKeys
from tests.harness import Backend

pytestmark = pytest.mark.backends("postgres-redis")
COPY = sql.SQL("COPY stage (k, v) FROM STDIN")
MERGE = sql.SQL("WITH m AS (INSERT INTO target AS t SELECT k, v FROM stage ON CONFLICT (k) DO "
                "UPDATE SET v = EXCLUDED.v RETURNING (xmax = 0) AS inserted) SELECT count(*) "
                "FILTER (WHERE inserted), count(*) FROM m; TRUNCATE stage")


def connect(backend: Backend) -> psycopg.Connection:
    url = backend.settings.database_url
    assert url is not None
    conn = psycopg.connect(url)
    conn.execute("CREATE TEMP TABLE target (k int PRIMARY KEY, v varchar(3))")
    conn.execute("INSERT INTO target VALUES (1, 'old')")
    conn.commit()
    conn.execute("CREATE TEMP TABLE stage (k int, v varchar(3)) ON COMMIT DELETE ROWS")
    return conn


@pytest.mark.parametrize("merge_rows", [1, 2, MERGE_ROWS])
def test_chunks_are_merged_in_order_and_counted(backend: Backend, merge_rows: int) -> None:
    with connect(backend) as conn, conn.cursor() as cur:
        loader = ChunkLoader(cur, COPY, MERGE, merge_rows=merge_rows)
        for text, rows in [("1\tnew\n2\tb\n", 2), ("", 0), ("3\tc\n", 1), ("4\td\n", 1)]:
            loader.put(text, rows)
        counts = loader.finish()
        loader.stop()
        assert (counts.valid, counts.inserted, counts.written) == (4, 3, 4)
        assert cur.execute("SELECT k, v FROM target ORDER BY k").fetchall() == [
            (1, "new"), (2, "b"), (3, "c"), (4, "d")]


def test_a_refused_chunk_raises_its_error_and_the_rollback_keeps_the_table(
        backend: Backend) -> None:
    with connect(backend) as conn, conn.cursor() as cur:
        loader = ChunkLoader(cur, COPY, MERGE)
        with pytest.raises(psycopg.errors.StringDataRightTruncation):
            try:
                loader.put("2\tb\n", 1)  # merged, then rolled back with the rest
                loader.put("3\ttoo long\n", 1)
                for k in range(4, 50):  # the error surfaces on a later put or at the end
                    loader.put(f"{k}\tx\n", 1)
                loader.finish()
            finally:
                loader.stop()
        conn.rollback()
        assert cur.execute("SELECT k, v FROM target").fetchall() == [(1, "old")]


def test_stop_ends_the_thread_with_chunks_still_waiting(backend: Backend) -> None:
    with connect(backend) as conn, conn.cursor() as cur:
        loader = ChunkLoader(cur, COPY, MERGE)
        for k in range(2, 6):
            loader.put(f"{k}\tx\n", 1)
        loader.stop()
        assert loader._thread is not None and not loader._thread.is_alive()
        conn.rollback()
        assert cur.execute("SELECT count(*) FROM target").fetchall() == [(1,)]


@pytest.mark.parametrize("merge_rows", [1, MERGE_ROWS])  # a merge per chunk, or one for all
@pytest.mark.parametrize("key", [("sku",), ("shop", "sku")])
def test_a_repeated_key_is_rejected_with_its_first_line_within_and_across_chunks(
        backend: Backend, key: tuple[str, ...], merge_rows: int) -> None:
    # Given a table keyed by sku, or by (shop, sku), and the import's stage and seen keys
    url = backend.settings.database_url
    assert url is not None
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TEMP TABLE keyed (shop text, sku text, v text, "
                    f"UNIQUE ({', '.join(key)}))")
        cur.execute(f"CREATE TEMP TABLE {STAGE} (shop text, sku text, v text, {LINE} int)")
        copy = sql.SQL("COPY {} (shop, sku, v, {}) FROM STDIN").format(
            sql.Identifier(STAGE), sql.Identifier(LINE))
        merge = sql.SQL("WITH m AS (INSERT INTO keyed SELECT shop, sku, v FROM {} RETURNING 1) "
                        "SELECT count(*), count(*) FROM m; TRUNCATE {}").format(
            sql.Identifier(STAGE), sql.Identifier(STAGE))
        keys = SeenKeys.create(cur, ("keyed",), key, cap=10)
        loader = ChunkLoader(cur, copy, merge, keys=keys, merge_rows=merge_rows)

        # When a chunk without repeats comes, then one repeating a key of its own (line 7
        # repeats line 4) and one of the first chunk's (line 5 repeats line 2), where s2/A
        # repeats only the sku
        chunks = [[(2, "s1", "A", "first"), (3, "s1", "B", "b")],
                  [(4, "s1", "C", "c"), (5, "s1", "A", "again"), (6, "s2", "A", "other"),
                   (7, "s1", "C", "again"), (8, "s1", "D", "d")]]
        for rows in chunks:
            loader.put("".join(f"{s}\t{k}\t{v}\t{n}\n" for n, s, k, v in rows), len(rows))
        counts = loader.finish()
        loader.stop()

        # Then each repeat is rejected naming its first line, and the first row of a key wins
        shown = ", ".join(key)
        expected = [(5, 2), (6, 2), (7, 4)] if key == ("sku",) else [(5, 2), (7, 4)]
        assert [(r.line, r.reason) for r in keys.rejected.kept()] == [
            (line, f"duplicate {shown}: the same as line {first}") for line, first in expected]
        assert keys.rejected.count == len(expected) and counts.valid == 7 - len(expected)
        stored = cur.execute("SELECT shop, sku, v FROM keyed ORDER BY sku, shop").fetchall()
        assert ("s1", "A", "first") in stored and ("s1", "C", "c") in stored
        assert len(stored) == 7 - len(expected) and ("s2" in {s for s, _, _ in stored}) == (
            len(key) == 2)
