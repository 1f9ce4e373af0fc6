"""The single-submit benchmark still runs end to end and prints both systems' figures."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import require
from tests.harness import ROOT


@pytest.mark.timeout(150)
def test_single_submit_prints_both_configurations_ratio_and_pickups_with_backlog() -> None:
    # Given PostgreSQL and Redis
    require("postgres")
    require("redis")

    # When the benchmark runs in its smallest form
    done = subprocess.run(
        [sys.executable, "-m", "bench.single_submit", "--quick", "--jobs", "40",
         "--samples", "4", "--warmup", "1", "--backlog", "200"],
        cwd=ROOT, capture_output=True, text=True, timeout=140,
    )

    # Then it succeeds, prints both sides' configuration with the server's durability settings
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert re.search(r"^celery .*profile=defaults.*task_ignore_result=True", out, re.M), out
    assert re.search(r"^crisper .*fsync=\w+, synchronous_commit=\w+", out, re.M), out
    # And what one durable commit costs on this database, back to back and spaced as pickups
    commit = re.search(r"^a durable one-row commit: p50 ([\d.]+) ms back to back; "
                       r"p50 ([\d.]+) / p99 ([\d.]+) ms one every 10 ms", out, re.M)
    assert commit, out
    assert float(commit.group(1)) > 0
    assert 0 < float(commit.group(2)) <= float(commit.group(3))
    # And each system's throughput and pickups: idle, after the jobs, then with another
    # queue's backlog
    for system in ("celery", "crisper"):
        line = re.search(rf"^{system}\s+single-submit (\d+) jobs/s\s+pickup p50 ([\d.]+) ms "
                         rf"p99 ([\d.]+) ms\s+pickup after the jobs p50 ([\d.]+) ms "
                         rf"p99 ([\d.]+) ms, then with the backlog p50 ([\d.]+) ms "
                         rf"p99 ([\d.]+) ms", out, re.M)
        assert line, out
        assert int(line.group(1)) > 0
        for p50, p99 in ((2, 3), (4, 5), (6, 7)):
            assert float(line.group(p50)) <= float(line.group(p99))
    assert re.search(r"^ratio crisper/celery single-submit [\d.]+x", out, re.M), out
