"""What a submitter may send to the built-in job types is checked at submit (a 422 over
HTTP), before any job exists: no worker is needed to refuse it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crisper import Crisper, Settings
from crisper.errors import InvalidParams
from tests.apps import contribapp


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Crisper]:
    crisper = contribapp.build(Settings(database_url=f"sqlite:///{tmp_path / 'c.db'}"),
                               folder=tmp_path)
    crisper.store.create_all()
    yield crisper
    crisper.store.close()


@pytest.mark.parametrize("type_, params", [
    ("contrib.import_products", {"path": ""}),
    ("contrib.import_products", {"path": "a" * 1025}),
    ("contrib.import_products", {"path": "a.csv", "table": "users"}),   # no such parameter
    ("contrib.newsletter", {"recipients": []}),
    ("contrib.newsletter", {"recipients": [{"to": "a@b.example, c@d.example"}]}),
    ("contrib.newsletter", {"recipients": [{"to": "a@b.example", "bcc": "c@d.example"}]}),
    ("contrib.newsletter", {"recipients": [{"to": f"a{i}@b.example"} for i in range(1001)]}),
    ("contrib.newsletter", {"recipients": [{"to": "a@b.example"}],
                            "values": {"name": "x" * 10_001}}),
    ("contrib.newsletter", {"recipients": [{"to": "a@b.example"}], "sender": "ceo@b.example"}),
])
def test_hostile_params_are_refused_at_submit(app: Crisper, type_: str,
                                              params: dict[str, Any]) -> None:
    with pytest.raises(InvalidParams):
        app.submit(type_, params)
