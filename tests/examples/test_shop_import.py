"""The shop example end to end: a real worker imports a CSV with bad rows into its own table."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from shop import jobs as shop
from sqlalchemy import create_engine, func, select

from crisper import Crisper, JobState
from tests.examples.conftest import EXAMPLES
from tests.harness import ROOT, Backend

ROWS = 5000
BAD_LINES = {2: "price", 1234: "sku", 5001: "price"}  # line 1 is the header


@pytest.fixture
def shop_app(backend: Backend, tmp_path: Path) -> Iterator[tuple[Crisper, dict[str, str]]]:
    env = {"CRISPER_APP": "shop.jobs", "PYTHONPATH": f"{ROOT}:{EXAMPLES}",
           "SHOP_DATABASE_URL": f"sqlite:///{tmp_path / 'shop.db'}"}
    backend.start_worker(extra=["-Q", "imports"], **env)
    app = shop.build(backend.settings)
    yield app, env
    app.store.close()


def write_catalogue(path: Path) -> None:
    lines = ["sku,name,price"]
    for line in range(2, ROWS + 2):
        bad = BAD_LINES.get(line)
        sku = "" if bad == "sku" else f"SKU-{line}"
        price = "free" if bad == "price" else f"{line % 100}.{line % 10}0"
        lines.append(f"{sku},Product {line},{price}")
    path.write_text("\n".join(lines) + "\n")


def test_a_csv_with_bad_rows_is_imported_and_each_bad_row_named_by_line(
        shop_app: tuple[Crisper, dict[str, str]], tmp_path: Path) -> None:
    app, env = shop_app
    csv_file = tmp_path / "catalogue.csv"
    write_catalogue(csv_file)

    job = app.submit("shop.import_products", {"path": str(csv_file)}).wait(timeout=60)

    record = app.jobs.get(job.id)
    assert record.state is JobState.SUCCEEDED, record.error
    assert record.result["imported"] == ROWS - len(BAD_LINES)
    assert [(e["line"], e["field"]) for e in record.result["errors"]] == sorted(BAD_LINES.items())
    assert record.percent == 100.0
    warnings = [line.message for line in app.jobs.logs(job.id) if line.level == "WARNING"]
    assert [w.split(":")[0] for w in warnings] == [f"line {n}" for n in sorted(BAD_LINES)]
    engine = create_engine(env["SHOP_DATABASE_URL"])
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(shop.products)) == \
            ROWS - len(BAD_LINES)
        assert conn.scalar(select(shop.products.c.price_cents)
                           .where(shop.products.c.sku == "SKU-3")) == 330
    engine.dispose()


def test_a_file_without_the_needed_columns_fails_at_once_without_retries(
        shop_app: tuple[Crisper, dict[str, str]], tmp_path: Path) -> None:
    app, _ = shop_app
    csv_file = tmp_path / "wrong.csv"
    csv_file.write_text("id;title;cost\n1;Mug;4.50\n")

    job = app.submit("shop.import_products", {"path": str(csv_file)}).wait(timeout=60)

    record = app.jobs.get(job.id)
    assert record.state is JobState.FAILED and record.attempt == 1 and record.max_attempts == 3
    assert record.error["message"] == ("wrong.csv line 1: missing column(s) sku, name, price; "
                                       "the header must name sku, name, price")
