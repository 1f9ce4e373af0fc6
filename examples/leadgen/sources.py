"""Where campaigns find companies: a lead source behind a small interface, and an offline one.

The write-up's system asked web search and company registers for each company; this example
ships a CSV of companies instead, so that it runs offline. Another source only has to yield
Company values and say which of its errors are worth a retry (SourceUnavailable).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

COLUMNS = ("name", "sector", "region", "employees", "website")


class SourceUnavailable(Exception):
    """The source cannot be read right now (a network share, an API down): worth a retry."""


class BadSourceData(Exception):
    """The source answered with data no retry will fix (a CSV without the needed columns)."""


@dataclass(frozen=True)
class Company:
    name: str
    sector: str
    region: str
    employees: int
    website: str


class LeadSource(Protocol):
    def companies(self, sector: str | None, region: str | None) -> Iterator[Company]:
        """The companies of a sector and region (None: any), in a stable order."""
        ...


class CsvLeadSource:
    """Companies from a CSV file with the columns in COLUMNS."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def companies(self, sector: str | None, region: str | None) -> Iterator[Company]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SourceUnavailable(f"cannot read {self.path.name}: {exc.strerror}") from exc
        reader = csv.DictReader(text.splitlines())
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise BadSourceData(f"{self.path.name}: missing column(s) {', '.join(missing)}")
        for line, row in enumerate(reader, start=2):
            if (sector and row["sector"] != sector) or (region and row["region"] != region):
                continue
            try:
                employees = int(row["employees"])
            except ValueError:
                raise BadSourceData(f"{self.path.name} line {line}: employees is not a number"
                                    ) from None
            yield Company(row["name"], row["sector"], row["region"], employees, row["website"])
