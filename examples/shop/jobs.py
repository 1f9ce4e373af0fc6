"""The shop's background jobs: a product CSV import that reports bad rows by line number.

Run it on the embedded default from the repository root:

    PYTHONPATH=examples crisper --app shop.jobs up
    crisper submit shop.import_products path=products.csv --wait

The catalogue lives in the shop's own database (SHOP_DATABASE_URL, default
sqlite:///shop.db), not in Crisper's. A bad row never stops the import: it is skipped,
logged with its line number, and listed in the job's result; a file without the needed
columns fails at once, without retries, since trying again cannot help.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, create_engine
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from crisper import Crisper, JobContext, Retry, Settings

COLUMNS = ("sku", "name", "price")
BATCH_ROWS = 1000
ERRORS_KEPT = 100

metadata = MetaData()
products = Table(
    "shop_products", metadata,
    Column("sku", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("price_cents", Integer, nullable=False),
)


class BadFile(ValueError):
    """The file cannot be imported at all (missing, or without the needed columns)."""


class Product(BaseModel):
    sku: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    name: str = Field(min_length=1, max_length=200)
    price: Decimal = Field(ge=0, max_digits=12, decimal_places=2)


@dataclass(frozen=True)
class RowError:
    line: int
    field: str
    message: str


def read_products(lines: Iterable[str], name: str = "the file"
                  ) -> Iterator[Product | RowError]:
    """Each data row, validated: a Product, or what is wrong with it and on which line."""
    reader = csv.DictReader(lines)
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise BadFile(f"{name} line 1: missing column(s) {', '.join(missing)}; "
                      f"the header must name {', '.join(COLUMNS)}")
    for row in reader:
        extra = row.pop(None, None)  # type: ignore[call-overload]
        if extra:
            yield RowError(reader.line_num, "-",
                           f"{len(COLUMNS) + len(extra)} fields, the header names {len(COLUMNS)}")
            continue
        try:
            yield Product.model_validate({c: (row.get(c) or "").strip() for c in COLUMNS})
        except ValidationError as exc:
            first = exc.errors()[0]
            yield RowError(reader.line_num, ".".join(str(p) for p in first["loc"]) or "-",
                           first["msg"])


class CountingLines:
    """A binary file's lines as text, counting the bytes read (for progress)."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.bytes = 0

    def __iter__(self) -> Iterator[str]:
        for i, line in enumerate(self.raw):
            self.bytes += len(line)
            yield line.decode("utf-8-sig" if i == 0 else "utf-8")


def shop_engine() -> Engine:
    engine = create_engine(os.environ.get("SHOP_DATABASE_URL", "sqlite:///shop.db"))
    metadata.create_all(engine)
    return engine


def save(engine: Engine, batch: list[Product]) -> None:
    """Insert or update a batch of products by SKU, in one transaction."""
    if not batch:
        return
    rows = {p.sku: {"sku": p.sku, "name": p.name, "price_cents": int(p.price * 100)}
            for p in batch}  # the last row of a SKU wins, as it would row by row
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        stmt: Any = pg_insert(products)
    else:
        stmt = sqlite_insert(products)
    stmt = stmt.on_conflict_do_update(index_elements=["sku"],
                                      set_={"name": stmt.excluded.name,
                                            "price_cents": stmt.excluded.price_cents})
    with engine.begin() as conn:
        conn.execute(stmt, list(rows.values()))


def import_products(ctx: JobContext, path: str, dry_run: bool = False) -> dict[str, Any]:
    """Import a product CSV (sku,name,price); bad rows are skipped and reported by line."""
    file = Path(path)
    if not file.is_file():
        raise BadFile(f"no such file: {path}")
    size = file.stat().st_size
    engine = shop_engine()
    imported, rejected = 0, 0
    errors: list[dict[str, Any]] = []
    batch: list[Product] = []
    try:
        with file.open("rb") as raw:
            lines = CountingLines(raw)
            for item in read_products(lines, file.name):
                if isinstance(item, RowError):
                    rejected += 1
                    if len(errors) < ERRORS_KEPT:
                        errors.append(asdict(item))
                        ctx.logger.warning("line %d: %s: %s", item.line, item.field,
                                           item.message)
                    continue
                batch.append(item)
                if len(batch) >= BATCH_ROWS:
                    ctx.check_cancelled()  # between batches: a cancel never splits one
                    if not dry_run:
                        save(engine, batch)
                    imported, batch = imported + len(batch), []
                    ctx.progress(lines.bytes, size, f"{imported} rows")
        ctx.check_cancelled()
        if not dry_run:
            save(engine, batch)
        imported += len(batch)
    finally:
        engine.dispose()
    ctx.progress(size, size, f"{imported} rows")
    ctx.logger.info("imported %d rows, rejected %d", imported, rejected)
    return {"imported": imported, "rejected": rejected, "errors": errors,
            "errors_truncated": rejected > len(errors), "dry_run": dry_run}


def build(settings: Settings | None = None) -> Crisper:
    app = Crisper("shop", settings=settings)
    app.job(name="shop.import_products", queue="imports", timeout="1h",
            retry=Retry(attempts=3, backoff="5m", dont_retry_on=(BadFile,)))(import_products)
    return app


crisper = build()
