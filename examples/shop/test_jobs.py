"""The shop's own tests of its jobs, with crisper.testing: no broker, no worker to start.

    pytest examples/shop
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from crisper import Crisper, JobState, Settings
from crisper.testing import run_inline
from shop import jobs as shop


@pytest.fixture
def crisper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Crisper]:
    """The shop's app on a throwaway SQLite database, its catalogue in another."""
    monkeypatch.setenv("SHOP_DATABASE_URL", f"sqlite:///{tmp_path / 'shop.db'}")
    app = shop.build(Settings(database_url=f"sqlite:///{tmp_path / 'crisper.db'}"))
    app.store.create_all()
    yield app
    app.store.close()


def test_an_import_saves_good_rows_and_reports_bad_ones(crisper: Crisper, tmp_path: Path
                                                        ) -> None:
    csv = tmp_path / "products.csv"
    csv.write_text("sku,name,price\nA-1,Kettle,19.90\nB 2,Cup,3\nC-3,Teapot,-1\nD-4,Tray,5\n")

    with run_inline(crisper):
        job = crisper.submit("shop.import_products", {"path": str(csv)})

    job.refresh()
    assert job.state is JobState.SUCCEEDED
    assert (job.result["imported"], job.result["rejected"]) == (2, 2)
    assert [e["line"] for e in job.result["errors"]] == [3, 4]
    logs = [line.message for line in crisper.jobs.logs(job.id)]
    assert logs[-1] == "imported 2 rows, rejected 2"
    engine = create_engine(f"sqlite:///{tmp_path / 'shop.db'}")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(shop.products)).scalar_one() == 2
    engine.dispose()


def test_a_file_without_its_columns_fails_at_once_without_retries(
        crisper: Crisper, tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("sku,title\nA-1,Kettle\n")

    with run_inline(crisper):
        job = crisper.submit("shop.import_products", {"path": str(csv)})

    job.refresh()
    assert job.state is JobState.FAILED
    assert job.record.attempt == 1 and (job.error or {}).get("type") == "BadFile"


def test_a_dry_run_reads_everything_and_saves_nothing(crisper: Crisper, tmp_path: Path
                                                      ) -> None:
    csv = tmp_path / "products.csv"
    csv.write_text("sku,name,price\nA-1,Kettle,19.90\n")

    with run_inline(crisper) as jobs:
        job = crisper.submit("shop.import_products", {"path": str(csv), "dry_run": True})

    assert jobs.ran == [job.id]  # one attempt, run in this process
    assert job.refresh().result["imported"] == 1 and job.result["dry_run"] is True
    engine = create_engine(f"sqlite:///{tmp_path / 'shop.db'}")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(shop.products)).scalar_one() == 0
    engine.dispose()
