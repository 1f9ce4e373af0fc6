"""The producer-instructions benchmark: its arithmetic, and its loop on real services (the
callgrind runs themselves take minutes, so CI runs the loop without valgrind)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.producer_instructions import instructions, per_submit
from tests.conftest import require
from tests.harness import ROOT

CALLGRIND_TAIL = """==6234== Events    : Ir
==6234== Collected : 5793490688
==6234==
==6234== I   refs:      5,793,490,688
"""


def test_the_count_is_read_from_callgrinds_summary_and_split_per_submit() -> None:
    assert instructions(CALLGRIND_TAIL) == 5_793_490_688
    with pytest.raises(ValueError, match="found 0"):
        instructions("==1== I   refs: 12\n")
    # 500 more submits cost 1,000,000 more instructions: 2,000 each, start-up cancelled out
    assert per_submit((100, 7_000_000), (600, 8_000_000)) == 2_000
    with pytest.raises(ValueError, match="more than the small one"):
        per_submit((600, 1), (100, 2))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("system", ["celery", "crisper"])
def test_the_counted_loop_submits_on_real_services(system: str) -> None:
    # Given PostgreSQL and Redis
    require("postgres")
    require("redis")

    # When the loop that callgrind counts runs once, without valgrind, with 7 submits
    done = subprocess.run([sys.executable, "-m", "bench.producer_instructions", "--child",
                           system, "7"], cwd=ROOT, capture_output=True, text=True, timeout=110)

    # Then it succeeds (Crisper's side also checks its 5 + 7 jobs are queued in the database)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{system}: 7 submits after 5 warm-up ones" in done.stdout
