"""The fault suite's table: one line per scenario in the terminal summary, and in a file.

A plugin (registered by tests/conftest.py) rather than a hook in the suite's conftest, so that
pytest-xdist's controller, which collects nothing, prints it too.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

FIGURES = "fault_figures"
ROOT = Path(__file__).resolve().parents[2]
TABLE = Path(os.environ.get("CRISPER_FAULTS_TABLE", ROOT / ".crisper-faults.txt"))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: the controller prints it
        return
    reports = [r for kind in ("passed", "failed", "error")
               for r in terminalreporter.stats.get(kind, [])
               if getattr(r, "when", "") == "call" and "fault_suite/test_" in r.nodeid
               and (r.failed or any(k == FIGURES for k, _ in r.user_properties))]
    if not any(k == FIGURES for r in reports for k, _ in r.user_properties):
        return  # no scenario ran (only the suite's own unit tests, say)
    lines = []
    for report in sorted(reports, key=lambda r: r.nodeid):
        figures = [v for k, v in report.user_properties if k == FIGURES]
        verdict = "ok  " if report.passed else "FAIL"
        name = report.nodeid.rsplit("::", 1)[-1]
        lines += [f"{verdict} {line}" for line in figures] or [f"{verdict} {name}: no figures"]
    seconds = sum(r.duration for r in reports)
    head = (f"fault suite: {len(reports)} scenarios, {seconds:.0f} s of test time, "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    terminalreporter.section("fault suite figures")
    for line in [head, *lines]:
        terminalreporter.write_line(line)
    TABLE.write_text("\n".join([head, *lines]) + "\n")
    terminalreporter.write_line(f"(table written to {TABLE})")
