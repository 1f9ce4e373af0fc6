"""The CSV import's loader thread against real PostgreSQL: chunks merged in order inside the
caller's transaction, a refused chunk's error raised in the caller's thread with its type."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from crisper.contrib.csv_import import ChunkLoader
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


def test_chunks_are_merged_in_order_and_counted(backend: Backend) -> None:
    with connect(backend) as conn, conn.cursor() as cur:
        loader = ChunkLoader(cur, COPY, MERGE)
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
