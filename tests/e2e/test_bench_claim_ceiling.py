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


@pytest.mark.timeout(180)
def test_claim_ceiling_on_a_table_with_history_reports_the_claim_index_as_it_drains() -> None:
    # Given PostgreSQL and Redis
    require("postgres")
    require("redis")

    # When the benchmark loads 20,000 finished jobs, then drains 3,000 queued ones, reporting
    # every 0.5 s
    done = subprocess.run([sys.executable, "-m", "bench.claim_ceiling", "--jobs", "3000",
                           "--runs", "1", "--history", "20000", "--every", "0.5"], cwd=ROOT,
                          capture_output=True, text=True, timeout=170)

    # Then it says what it loaded, and its interval lines count up to every job, each with a
    # rate, the claim index's pages read per job and the table's dead tuples and autovacuums
    assert done.returncode == 0, done.stdout + done.stderr
    assert "loaded 20,000 finished jobs" in done.stdout, done.stdout
    intervals = re.findall(r"^ +([\d,]+) done +(\d+) jobs/s  claim index +([\d.]+) pages read "
                           r"per job \(of [\d,]+\)  dead tuples [\d,]+  autovacuums \d+$",
                           done.stdout, re.MULTILINE)
    assert intervals, done.stdout
    assert intervals[-1][0] == "3,000"
    # (PostgreSQL publishes a busy backend's counters about once a second, so an interval
    # this short may see none of its reads; the run as a whole does)
    assert any(float(pages) > 0 for _, _, pages in intervals), intervals
