"""The claim-ceiling benchmark drains its queue with the outcome+claim statement and reports."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import require
from tests.harness import ROOT


@pytest.mark.timeout(120)
def test_claim_ceiling_drains_every_job_and_prints_its_rate_and_cpu_per_job() -> None:
    # Given PostgreSQL and Redis
    require("postgres")
    require("redis")

    # When the benchmark drains 200 jobs once, with statistics taken of the backlog first (it
    # fails if its slots finish any other number)
    done = subprocess.run([sys.executable, "-m", "bench.claim_ceiling", "--jobs", "200",
                           "--runs", "1", "--analyze"], cwd=ROOT, capture_output=True, text=True,
                          timeout=110)

    # Then it succeeds, says how durable the database's commits were and whether autovacuum
    # runs, and prints the rate and both sides' CPU per job
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"fsync=\w+, synchronous_commit=\w+, autovacuum=\w+", done.stdout), \
        done.stdout
    median = re.search(r"^median: (\d+) jobs/s, PostgreSQL ([\d.]+) ms CPU per job, clients "
                       r"([\d.]+) ms$", done.stdout, re.MULTILINE)
    assert median, done.stdout
    assert int(median.group(1)) > 0 and float(median.group(2)) > 0
