"""Product importer: the product table, and its job types (the CSV import, a test job, the
periodic cleanup of old uploads).

The import is Crisper's built-in CSV import (crisper.contrib.csv_import): the table, the row
model and the natural key (sku) are fixed here; a submitter only names an uploaded file.
Results are kept for PRODUCTS_RESULT_TTL (1 h, the write-up's result expiry), then the
pruner deletes the records; the cleanup removes uploads older than PRODUCTS_UPLOAD_TTL.

Configuration (environment; defaults are the write-up's): PRODUCTS_IMPORT_DIR (imports),
PRODUCTS_RESULT_TTL (1h), PRODUCTS_UPLOAD_TTL (1h), PRODUCTS_CLEANUP_CRON (*/15 * * * *),
PRODUCTS_SOFT_LIMIT (55m), PRODUCTS_HARD_LIMIT (1h), PRODUCTS_RETRY_DELAY (5m),
PRODUCTS_CHUNK_ROWS (20000).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from pydantic import BaseModel, Field
from sqlalchemy import (
    CHAR,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
)

from crisper import Crisper, JobContext, Retry, Settings
from crisper.contrib.csv_import import CHUNK_ROWS, ImportFileError, csv_import
from crisper.durations import seconds
from crisper.states import ACTIVE

IMPORT, TEST = "products.import_csv", "products.test_task"
CLEANUP = "products.cleanup_old_imports"
MAX_BYTES = 1 << 30  # an upload or file larger than this is refused
metadata = MetaData()
products = Table(
    "products", metadata,
    Column("sku", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False),
    Column("category", String(64), nullable=False),
    Column("brand", String(64), nullable=False),
    Column("price", Numeric(12, 2), nullable=False),
    Column("currency", CHAR(3), nullable=False),
    Column("stock", Integer, nullable=False),
    Column("weight_kg", Float, nullable=False),
    Column("ean", String(14), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


class ProductRow(BaseModel):
    """One CSV row; its field names are the header's column names and the table's."""

    sku: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(max_length=2000)
    category: str = Field(min_length=1, max_length=64)
    brand: str = Field(min_length=1, max_length=64)
    price: Decimal = Field(ge=0, max_digits=12, decimal_places=2)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    stock: int = Field(ge=0, le=2**31 - 1)
    weight_kg: float = Field(ge=0, allow_inf_nan=False)
    ean: str = Field(pattern=r"^[0-9]{8,14}$")
    active: bool
    updated_at: datetime


@dataclass(frozen=True)
class Config:
    import_dir: Path = Path("imports")
    result_ttl: str = "1h"
    upload_ttl: str = "1h"
    cleanup_cron: str = "*/15 * * * *"
    soft_limit: str = "55m"
    hard_limit: str = "1h"
    retry_delay: str = "5m"
    chunk_rows: int = CHUNK_ROWS

    @classmethod
    def from_env(cls) -> Config:
        env, base = os.environ.get, cls()
        return cls(Path(env("PRODUCTS_IMPORT_DIR", str(base.import_dir))),
                   env("PRODUCTS_RESULT_TTL", base.result_ttl),
                   env("PRODUCTS_UPLOAD_TTL", base.upload_ttl),
                   env("PRODUCTS_CLEANUP_CRON", base.cleanup_cron),
                   env("PRODUCTS_SOFT_LIMIT", base.soft_limit),
                   env("PRODUCTS_HARD_LIMIT", base.hard_limit),
                   env("PRODUCTS_RETRY_DELAY", base.retry_delay),
                   int(env("PRODUCTS_CHUNK_ROWS", str(base.chunk_rows))))


def cleanup_old_imports(crisper: Crisper, config: Config) -> dict[str, Any]:
    """Delete uploads older than the upload TTL, except those an unfinished import still
    reads (a retry would need them). Job records go by retention, not here."""
    uploads = config.import_dir / "uploads"
    cutoff = time.time() - seconds(config.upload_ttl)
    busy = {j.params.get("path") for j in crisper.list_jobs(
        state=ACTIVE, type=IMPORT, limit=500).items}
    removed = kept = 0
    for path in sorted(uploads.glob("*.csv")) if uploads.is_dir() else []:
        if path.stat().st_mtime < cutoff and f"uploads/{path.name}" not in busy:
            path.unlink(missing_ok=True)
            removed += 1
        else:
            kept += 1
    return {"removed": removed, "kept": kept}


def build(settings: Settings | None = None, config: Config | None = None) -> Crisper:
    """The importer's Crisper app; its product table lives in Crisper's database."""
    config = config or Config.from_env()
    app = Crisper("product_importer", settings=settings)
    csv_import(app, name=IMPORT, model=ProductRow, table="products", key=("sku",),
               folder=config.import_dir, queue="imports", chunk_rows=config.chunk_rows,
               max_bytes=MAX_BYTES, timeout=(config.soft_limit, config.hard_limit),
               retention=config.result_ttl,
               retry=Retry(attempts=3, backoff=config.retry_delay, factor=1.0, jitter=False,
                           dont_retry_on=(ImportFileError, psycopg.errors.DataError)))

    @app.job(name=TEST, retention=config.result_ttl)
    def test_task(ctx: JobContext) -> dict[str, str]:
        """Says the workers run jobs (the write-up's test_task)."""
        return {"status": "success", "message": "the worker is running jobs"}

    @app.job(name=CLEANUP, schedule=config.cleanup_cron, retention=config.result_ttl)
    def cleanup(ctx: JobContext) -> dict[str, Any]:
        """Remove old uploaded files (the write-up's cleanup_old_imports)."""
        return cleanup_old_imports(app, config)

    return app


crisper = build()
