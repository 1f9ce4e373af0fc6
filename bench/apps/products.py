"""The product catalogue the CSV import bench and the contrib tests load: 12 columns."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field

DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    sku text PRIMARY KEY,
    name text NOT NULL,
    description text NOT NULL,
    category text NOT NULL,
    brand text NOT NULL,
    price numeric(12, 2) NOT NULL,
    currency char(3) NOT NULL,
    stock integer NOT NULL,
    weight_kg double precision NOT NULL,
    ean text NOT NULL,
    active boolean NOT NULL,
    updated_at timestamptz NOT NULL
)
"""


class ProductRow(BaseModel):
    """One row of the product CSV, as bench/gen_products.py writes it."""

    sku: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(max_length=2000)
    category: str = Field(min_length=1, max_length=64)
    brand: str = Field(min_length=1, max_length=64)
    price: Decimal = Field(ge=0, max_digits=12, decimal_places=2)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    stock: int = Field(ge=0)
    weight_kg: float = Field(ge=0)
    ean: str = Field(pattern=r"^[0-9]{8,14}$")
    active: bool
    updated_at: datetime
