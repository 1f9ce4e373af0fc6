"""The CSV import end to end: real worker processes, PostgreSQL and Redis."""

from __future__ import annotations

import io
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench import gen_products
from bench.apps.products import DDL
from crisper import Crisper, JobState
from crisper.contrib.csv_source import save_upload
from tests.apps import contribapp
from tests.harness import Backend

pytestmark = [pytest.mark.backends("postgres-redis"), pytest.mark.slow]
TYPE = "contrib.import_products"


@dataclass
class World:
    app: Crisper
    folder: Path
    url: str

    def run(self, path: str) -> dict:
        job = self.app.submit(TYPE, {"path": path}).wait(timeout=240)
        record = self.app.jobs.get(job.id)
        assert record.state is JobState.SUCCEEDED, record.error
        return record.result

    def query(self, statement: str) -> list[tuple]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(statement).fetchall()


@pytest.fixture
def world(backend: Backend) -> Iterator[World]:
    url = backend.settings.database_url
    assert url is not None
    with psycopg.connect(url) as conn:
        conn.execute(DDL.format(table="products"))
    folder = backend.tmp / "imports"
    folder.mkdir()
    backend.start_worker(extra=["-Q", "imports"], CRISPER_APP="tests.apps.contribapp")
    app = contribapp.build(backend.settings, folder=folder)
    yield World(app, folder, url)
    app.store.close()


def test_good_rows_are_stored_bad_ones_named_by_line_and_a_rerun_adds_nothing(
        world: World) -> None:
    # Given 3000 rows, every 500th spoiled: a wrong type, missing columns, a bad byte, a
    # repeated SKU, in turn
    spoiled = gen_products.write(world.folder / "catalogue.csv", rows=3000, bad_every=500)
    assert spoiled == 6

    # When it is imported
    result = world.run("catalogue.csv")

    # Then the other rows are in the table and each spoiled one is reported by its line
    assert (result["rows"], result["imported"], result["inserted"]) == (3000, 2994, 2994)
    assert result["rejected"] == 6 and not result["errors_truncated"]
    reasons = {e["line"]: e["reason"] for e in result["errors"]}
    assert sorted(reasons) == [501, 1001, 1501, 2001, 2501, 3001]
    assert reasons[501].startswith("stock: Input should be a valid integer")
    assert reasons[1001] == "5 fields, the header has 12: missing columns"
    assert reasons[1501] == "not valid text in the file's encoding"
    assert reasons[2001] == "duplicate sku: the same as line 2000"
    assert world.query("SELECT count(*) FROM products") == [(2994,)]

    # When the same file is imported again, nothing is added or rewritten
    again = world.run("catalogue.csv")
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, 2994)
    assert world.query("SELECT count(*) FROM products") == [(2994,)]

    # And a later file changes the rows it names, by SKU
    header, first = (world.folder / "catalogue.csv").read_text(
        errors="replace").splitlines()[:2]
    (world.folder / "fix.csv").write_text(
        f"{header}\n{first.replace(first.split(',')[5], '1.00', 1)}\n")
    fixed = world.run("fix.csv")
    assert (fixed["inserted"], fixed["updated"]) == (0, 1)
    assert world.query("SELECT price FROM products WHERE sku = 'SKU-00000001'")[0][0] == 1


@pytest.mark.parametrize("path", ["../outside.csv", "/etc/passwd", "link.csv", "missing.csv",
                                  "sub/../../outside.csv"])
def test_a_path_that_leaves_the_folder_fails_at_once(world: World, path: str) -> None:
    (world.folder.parent / "outside.csv").write_text("sku\nX\n")
    (world.folder / "link.csv").symlink_to(world.folder.parent / "outside.csv")

    job = world.app.submit(TYPE, {"path": path}).wait(timeout=120)

    record = world.app.jobs.get(job.id)
    assert record.state is JobState.FAILED and record.attempt == 1
    assert record.error["type"] == "ImportFileError"
    assert world.query("SELECT count(*) FROM products") == [(0,)]


def test_a_failure_midway_leaves_the_table_as_it_was(world: World) -> None:
    # Given a table holding 100 products, whose brand column is narrower than the model's
    gen_products.write(world.folder / "first.csv", rows=100)
    world.run("first.csv")
    with psycopg.connect(world.url) as conn:
        conn.execute("ALTER TABLE products ALTER COLUMN brand TYPE varchar(16)")
    before = world.query("SELECT sku, price FROM products ORDER BY sku")
    # and a file of 5000 rows (five chunks) whose row 4502 has a brand the table refuses
    rng = random.Random(1)
    lines = [gen_products.HEADER] + [gen_products.product_line(n, rng)
                                     for n in range(1, 5001)]
    cells = lines[4502].split(",")
    cells[4] = "B" * 40
    lines[4502] = ",".join(cells)
    (world.folder / "second.csv").write_text("\n".join(lines) + "\n")

    # When it is imported: four chunks go to the stage before the refusal
    job = world.app.submit(TYPE, {"path": "second.csv"}).wait(timeout=120)

    # Then the job failed at once and the table is exactly as before
    record = world.app.jobs.get(job.id)
    assert record.state is JobState.FAILED and record.attempt == 1
    assert "value too long" in record.error["message"]
    assert world.query("SELECT sku, price FROM products ORDER BY sku") == before


def test_an_uploaded_file_is_imported_with_live_progress(world: World) -> None:
    data = io.BytesIO()
    # (enough rows that staging outlasts a few lease beats, which store the progress)
    gen_products.write(world.folder / "tmp.csv", rows=200_000)
    data.write((world.folder / "tmp.csv").read_bytes())
    data.seek(0)
    name = save_upload(world.folder, data, max_bytes=1 << 30)
    assert name.startswith("uploads/") and name.endswith(".csv")

    job = world.app.submit(TYPE, {"path": name})
    seen: set[str] = set()
    while (record := world.app.jobs.get(job.id)).state not in (
            JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED):
        if record.progress_message:
            seen.add(record.progress_message)
        time.sleep(0.1)

    assert record.state is JobState.SUCCEEDED, record.error
    assert record.result["inserted"] == 200_000 and record.percent == 100.0
    live = [m for m in seen if "rows/s" in m]
    assert live, f"no live progress seen: {seen}"
    assert all(m.split()[0].isdigit() and m.split()[1] == "rows," for m in live)


def test_rejections_are_counted_in_full_and_listed_up_to_the_cap(world: World) -> None:
    # Given 300 rows of one SKU, and 50 rows with a field too many after them
    rng = random.Random(3)
    same = gen_products.product_line(1, rng)
    lines = [gen_products.HEADER] + [same] * 300 + [
        same.replace("SKU-00000001", f"SKU-X{n}").replace(",EUR,", ",EUR,lots,", 1)
        for n in range(50)]
    (world.folder / "same.csv").write_text("\n".join(lines) + "\n")

    result = world.run("same.csv")

    assert (result["imported"], result["rejected"]) == (1, 299 + 50)
    assert result["errors_truncated"] is True and len(result["errors"]) == 100
    assert [e["line"] for e in result["errors"]] == list(range(3, 103))
    assert result["errors"][0]["reason"] == "duplicate sku: the same as line 2"


def test_a_cancelled_import_stops_between_chunks_and_rolls_back(world: World) -> None:
    # Given a long import that has started storing chunks
    # (500 chunks: room for the cancel to arrive before the last one, on a fast machine too)
    gen_products.write(world.folder / "long.csv", rows=500_000)
    job = world.app.submit(TYPE, {"path": "long.csv"})
    running = wait_for_progress(world, job.id)

    # When it is cancelled
    world.app.jobs.cancel(job.id)
    job.wait(timeout=120)

    # Then it stopped before the end, and nothing reached the table
    record = world.app.jobs.get(job.id)
    assert record.state is JobState.CANCELLED
    assert running.progress_current < running.progress_total
    assert world.query("SELECT count(*) FROM products") == [(0,)]


def wait_for_progress(world: World, job_id: object, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = world.app.jobs.get(job_id)
        if record.state is JobState.RUNNING and record.progress_current:
            return record
        assert record.state in (JobState.QUEUED, JobState.RUNNING), record.state
        time.sleep(0.05)
    raise AssertionError("the import never reported progress")
