"""The product catalogue the CSV import bench and the contrib tests load: 12 columns.

Its row model is the product importer example's own (examples/product_importer/jobs.py),
so the bench measures the validation a user of that example gets.
"""

from __future__ import annotations

import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:  # the examples are run from their folder, not installed
    sys.path.append(str(EXAMPLES))

from product_importer.jobs import ProductRow  # noqa: E402

__all__ = ["DDL", "ProductRow"]

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
