"""Fault suite fixtures: private services, and scenarios that count and check their figures
(printed by tests/fault_suite/summary.py)."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crisper import Crisper, SubmitRequest
from crisper.store import Store
from tests.conftest import IN_CI
from tests.fault_suite.private import (
    FaultBackend,
    PrivatePostgres,
    fault_backend,
    missing_tools,
)
from tests.fault_suite.summary import FIGURES
from tests.fault_suite.tally import Figures, count, wait_settled


def _require_tools() -> None:
    missing = missing_tools()
    if missing:
        reason = f"the fault suite needs {', '.join(missing)}"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    """One private cluster per run, created once (about a second); each test gets a schema."""
    _require_tools()
    folder = Path(tempfile.mkdtemp(prefix="crisper-faults-pg-"))  # the postgres user reads it
    folder.chmod(0o755)
    cluster = PrivatePostgres(folder)
    cluster.create()
    try:
        yield cluster
    finally:
        try:
            cluster.stop("immediate")
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def fb(private_postgres: PrivatePostgres, tmp_path: Path) -> Iterator[FaultBackend]:
    """A private PostgreSQL schema and a private redis-server, the fault probe's job types."""
    private_postgres.ensure_running()
    with fault_backend(tmp_path, private_postgres) as backend:
        yield backend


class Scenario:
    """One fault scenario: the jobs it submitted, when its fault ended, and its figures."""

    def __init__(self, node: pytest.Item, name: str) -> None:
        self.node = node
        self.name = name
        self.ids: list[uuid.UUID] = []
        self.fault_ended: float | None = None
        self.notes: list[str | Callable[[], str]] = []

    def submit(self, app: Crisper, type_: str, n: int, **params: Any) -> list[uuid.UUID]:
        handles = app.submit_many([SubmitRequest(type_, dict(params)) for _ in range(n)])
        ids = [h.id for h in handles]
        self.ids += ids
        return ids

    def fault_over(self) -> None:
        """The fault has ended (the process restarted, the service is back): recovery starts."""
        self.fault_ended = time.time()

    def note(self, text: str | Callable[[], str]) -> None:
        """Add to the scenario's line: a text, or a function called when the figures are taken."""
        self.notes.append(text)

    def figures(self, store: Store, folder: Path, timeout: float, grace: float) -> Figures:
        """Wait up to `timeout` for every job to end, then count; the line is kept either way."""
        settled_at = wait_settled(store, self.ids, timeout)
        figures = count(self.name, store, folder, self.ids, grace)
        if settled_at is not None:
            figures.recover = max(0.0, settled_at - (self.fault_ended or settled_at))
        figures.note = "; ".join(n if isinstance(n, str) else n() for n in self.notes)
        self.node.user_properties.append((FIGURES, figures.line()))
        return figures

    def check(self, figures: Figures, failed: set[str] | frozenset[str] = frozenset(),
              cancelled: set[str] | frozenset[str] = frozenset(),
              overlaps_allowed: bool = False, recover_within: float | None = None) -> None:
        """The expected figures: nothing lost, duplicated or stuck; every end has a true reason."""
        self._check(figures, failed, cancelled, overlaps_allowed, recover_within)

    @staticmethod
    def _check(figures: Figures, failed: set[str] | frozenset[str],
               cancelled: set[str] | frozenset[str], overlaps_allowed: bool,
               recover_within: float | None) -> None:
        __tracebackhide__ = True
        if figures.examples:
            print("\n".join(figures.examples[:3]))
        assert figures.lost == 0, figures.line()
        assert figures.stuck == 0, figures.line()
        assert figures.running == 0, figures.line()
        assert figures.duplicated == 0, figures.line()
        assert set(figures.failed) <= set(failed), figures.line()
        assert set(figures.cancelled) <= set(cancelled), figures.line()
        if not overlaps_allowed:
            assert figures.overlapping == 0, figures.line()
        if recover_within is not None:
            assert figures.recover is not None and figures.recover <= recover_within, \
                figures.line()

    def finish(self, backend: FaultBackend, timeout: float = 30, **expected: Any) -> Figures:
        lease = float(backend.env["CRISPER_LEASE_SECONDS"])
        figures = self.figures(backend.app.store, backend.tmp, timeout, grace=lease)
        self.check(figures, **expected)
        return figures


@pytest.fixture
def scenario(request: pytest.FixtureRequest) -> Scenario:
    """The scenario named after the test (test_ and the module's prefix dropped)."""
    name = request.node.name.removeprefix("test_").replace("_", "-")
    return Scenario(request.node, name)
