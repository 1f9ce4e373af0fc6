"""Shared fixtures: real services (skipped on a bare machine, required in CI), both backends,
and real worker and scheduler processes (see tests/harness.py)."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.harness import Backend, Services, kill_stray_children, make_backend

pytest_plugins = ["tests.fault_suite.summary"]  # the fault suite's table, also under xdist
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BACKENDS = ("postgres-redis", "sqlite-embedded")
NEEDS = {"postgres-redis": ("postgres", "redis"), "sqlite-embedded": ()}
_skipped: dict[str, str] = {}


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


SERVICES = Services(postgres=_reachable(5432), redis=_reachable(6379), rabbitmq=_reachable(5672))


def require(service: str) -> None:
    """Skip when `service` is missing on a laptop; fail in CI, where it must be there."""
    if getattr(SERVICES, service):
        return
    reason = f"{service} is not reachable on 127.0.0.1"
    if IN_CI:
        pytest.fail(f"{reason}, and CI must run the {service} suite")
    _skipped[service] = reason
    pytest.skip(reason)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "backends(*names): run only on these backends (default: all)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("backends")
        names = marker.args if marker else BACKENDS
        metafunc.parametrize("backend", names, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A clean database and broker: PostgreSQL + Redis, or SQLite + the embedded Valkey."""
    for service in NEEDS[request.param]:
        require(service)
    with make_backend(request.param, tmp_path) as b:
        yield b


LOG_TAIL_CHARS = 6000


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, None]:
    """A failed test that ran workers or a scheduler reports the end of each one's log: a
    failure seen once in CI then says what those processes did (they are stopped after)."""
    outcome = yield
    report = outcome.get_result()
    backend = getattr(item, "funcargs", {}).get("backend")
    if report.when != "call" or not report.failed or not isinstance(backend, Backend):
        return
    for proc in backend.procs:
        try:
            tail = proc.output()[-LOG_TAIL_CHARS:]
        except OSError as exc:
            tail = f"(unreadable: {exc})"
        report.sections.append((f"log of {proc.log_path.name}", tail))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Every test stops what it started, so a child still running here leaked: name it and
    kill it. A forked child that never reached exec (stuck in a lock the fork copied) holds
    this process's pipes, on which pytest-xdist would wait for ever at the end of the run."""
    if getattr(session.config.option, "numprocesses", None) and not hasattr(
            session.config, "workerinput"):
        return  # the xdist controller: its children are the test processes
    for pid, command in kill_stray_children().items():
        sys.stderr.write(f"\ntests left a process running; killed it: {pid} {command}\n")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    reporter = terminalreporter
    if _skipped:
        reporter.section("suites skipped: services missing on this machine")
        for service, reason in sorted(_skipped.items()):
            reporter.write_line(f"{service}: {reason}; the tests that need it were skipped")
    else:
        ran = [name for name in ("postgres", "redis", "rabbitmq") if getattr(SERVICES, name)]
        reporter.write_line(f"service suites: ran against {', '.join(ran) or 'none'}")
