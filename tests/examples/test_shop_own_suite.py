"""The shop example's own test suite (examples/shop/test_jobs.py, on crisper.testing) passes
when its team runs it: `pytest examples/shop`, with no broker and no worker."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.harness import ROOT


def test_the_shops_own_suite_passes_with_the_testing_mode() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRISPER_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "examples/shop", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 passed" in done.stdout
