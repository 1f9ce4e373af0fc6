"""The anatomy diagnostic still runs: round trips per job, and a pickup's stage timeline."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import require
from tests.harness import ROOT


@pytest.mark.timeout(150)
def test_anatomy_counts_round_trips_and_times_each_stage_of_a_pickup() -> None:
    # Given PostgreSQL and Redis
    require("postgres")
    require("redis")

    # When the diagnostic runs in a small form, with a timeline of 5 pickups
    done = subprocess.run(
        [sys.executable, "-m", "bench.anatomy", "--jobs", "20", "--idle", "3",
         "--timeline", "5", "--markers-ab", "5"],
        cwd=ROOT, capture_output=True, text=True, timeout=140,
    )

    # Then it counts the claim's round trips per job
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert re.search(r"database round trips per job: [1-9][\d.]*", out), out
    # And it times every stage, in order, from the submit to the body; none negative within
    # one process (the worker may take the message before the publishing call has returned)
    gaps = re.findall(r"^\s+([a-z ]+?) -> ([a-z ]+?)\s+(-?[\d.]+) \(\s*(-?[\d.]+)\)$", out,
                      re.M)
    # (a pickup on a quiet queue is heralded: its marker is set by the producer, checked
    # after the commit, and deleted by the slot; engine/wakes.py)
    assert [(a, b) for a, b, _, _ in gaps][:3] == [
        ("submit", "submit returned"), ("submit returned", "publish start"),
        ("publish start", "marker check start")], out
    assert {b for _, b, _, _ in gaps} >= {"marker check end", "received", "pool child",
                                          "marker delete end", "claim end", "body"}, out
    assert re.search(r"^\s+herald, beside the submit \(\d+ of 5 pickups\)", out, re.M), out
    assert all(float(median) >= 0 for a, b, median, _ in gaps
               if (a, b) != ("publish end", "received")), out
    total = re.search(r"^\s+submit -> body\s+([\d.]+)$", out, re.M)
    assert total and float(total.group(1)) >= sum(float(m) for _, _, m, _ in gaps) * 0.5, out
    # And it times pickups with the markers in band and out of band, in turn
    for side in ("in band", "out of band"):
        assert re.search(rf"^\s+{side}\s+p50\s+[\d.]+\s+p90\s+[\d.]+\s+p99\s+[\d.]+$", out,
                         re.M), out
