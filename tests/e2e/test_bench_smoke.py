"""The throughput benchmark still runs end to end and prints both systems' figures."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import require
from tests.harness import ROOT


@pytest.mark.timeout(120)
def test_quick_benchmark_prints_throughput_ratio_and_pickup_for_both_systems() -> None:
    # Given PostgreSQL and Redis
    require("postgres")
    require("redis")

    # When the benchmark runs in its smallest form
    done = subprocess.run(
        [sys.executable, "-m", "bench.throughput", "--quick", "--jobs", "60",
         "--samples", "5", "--warmup", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=110,
    )

    # Then it succeeds and reports the machine before the run, both systems, their ratio and
    # pickup latencies
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    before = re.search(r"^run 1: before it, load average [\d.]+, CPU idle \d+%, "
                       r"a fixed CPU task ([\d.]+) ms$", out, re.MULTILINE)
    assert before and float(before.group(1)) > 0, out
    for system in ("celery", "crisper"):
        line = re.search(rf"^{system}\s+throughput (\d+) jobs/s\s+pickup p50 ([\d.]+) ms\s+"
                         rf"p99 ([\d.]+) ms", out, re.MULTILINE)
        assert line, out
        assert int(line.group(1)) > 0
        assert 0 < float(line.group(2)) <= float(line.group(3))
    assert re.search(r"^ratio crisper/celery throughput [\d.]+x", out, re.MULTILINE), out
