"""The embedded default (`crisper up`: SQLite + the bundled Valkey) under faults: its Valkey
killed, the whole process group SIGKILLed then restarted, a graceful stop with a long job
running, and a full disk. Expected: every job ends succeeded, once; nothing waits a lease."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from crisper.errors import CrisperError
from crisper.store.models import jobs
from tests.conftest import IN_CI
from tests.fault_suite.conftest import Scenario
from tests.fault_suite.embedded import Up
from tests.harness import FAST, fill_disk, small_tmpfs, wait_for

pytestmark = pytest.mark.faults
LEASE = float(FAST["CRISPER_LEASE_SECONDS"])


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    instance = Up(tmp_path, tmp_path / "home")
    try:
        yield instance
    finally:
        instance.close()


def started(up: Up) -> int:
    from tests.apps.faultprobe import read_marks

    return sum(m.event == "start" for m in read_marks(up.tmp))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_up_valkey_killed(up: Up, scenario: Scenario) -> None:
    # Given `crisper up` working through jobs
    up.start()
    app = up.app()
    scenario.submit(app, "fault.once", 6, seconds=1.0)
    scenario.submit(app, "fault.retry", 6, seconds=1.0)
    wait_for(lambda: started(up) >= 2, 30, "jobs to start")
    # When its Valkey child dies
    old = up.valkey_pid()
    os.kill(old, signal.SIGKILL)
    scenario.fault_over()
    # Then `crisper up` restarts it and every job succeeds, once
    scenario.note(lambda: "valkey restarted" if up.valkey_pid() != old and alive(up.valkey_pid())
                  else "valkey not restarted")
    figures = scenario.figures(app.store, up.tmp, timeout=30, grace=LEASE)
    scenario.check(figures, recover_within=20)


def test_up_group_sigkilled_then_restarted(up: Up, scenario: Scenario) -> None:
    # Given `crisper up` working through jobs without a retry option
    first = up.start()
    app = up.app()
    scenario.submit(app, "fault.once", 8, seconds=1.0)
    wait_for(lambda: started(up) >= 2, 30, "jobs to start")
    # When its whole process group is SIGKILLed (Valkey too), and it is started again
    first.signal(signal.SIGKILL)
    first.popen.wait(10)
    up.start()
    scenario.fault_over()
    # Then every job succeeds, once
    figures = scenario.figures(app.store, up.tmp, timeout=30, grace=LEASE)
    scenario.check(figures, recover_within=20)


def test_up_graceful_stop_with_a_long_job(tmp_path: Path, scenario: Scenario) -> None:
    """An announced stop interrupts a job that outlives the drain; on restart it is rescued at
    once (not a lease later), without spending an attempt. The lease is long (20 s) here so
    that "at once" and "a lease later" differ; the drain is short (3 s) to keep it quick."""
    lease = 20.0
    up = Up(tmp_path, tmp_path / "home", CRISPER_LEASE_SECONDS=str(lease),
            CRISPER_DRAIN_SECONDS="3")
    try:
        # Given `crisper up` running a job whose first run takes a minute
        first = up.start()
        app = up.app()
        scenario.submit(app, "fault.once", 1, seconds=0.5, first_run_seconds=60)
        wait_for(lambda: started(up) >= 1, 30, "the long job to start")
        # When it is stopped gracefully (SIGTERM, as Ctrl-C or a service manager does)
        asked = time.monotonic()
        os.kill(first.pid, signal.SIGTERM)
        first.popen.wait(120)
        scenario.note(f"the stop took {time.monotonic() - asked:.0f}s")
        # And started again
        up.start()
        scenario.fault_over()
        # Then the job runs again at once and succeeds, no attempt spent on the stop
        figures = scenario.figures(app.store, up.tmp, timeout=lease + 10, grace=lease)
        scenario.check(figures, recover_within=lease / 2)
    finally:
        up.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs: a disk that fills up."""
    with small_tmpfs(tmp_path / "disk", "16m", required=IN_CI) as disk:
        yield disk


def test_up_full_disk(small_disk: Path, tmp_path: Path, scenario: Scenario) -> None:
    up = Up(tmp_path, small_disk / "home")
    try:
        # Given `crisper up` on a small disk, with jobs done
        proc = up.start()
        app = up.app()
        scenario.submit(app, "fault.once", 4, seconds=0.2)
        wait_for(lambda: started(up) >= 4, 30, "the first jobs to run")
        # When the disk fills up, and jobs are submitted (Python API and CLI)
        filler = fill_disk(small_disk)
        refused, raw = 0, []
        for _ in range(3):
            try:
                scenario.ids.append(app.submit("fault.once", {"seconds": 0.2}).id)
            except CrisperError:
                refused += 1
            except Exception as exc:  # a raw library error is a defect; counted, not raised
                raw.append(repr(exc)[:200])
        cli = up.cli("submit", "fault.once", "seconds=0.2")
        time.sleep(3)
        running_through = proc.popen.poll() is None
        scenario.note(f"while full: Python refused {refused}, raw errors {len(raw)}, "
                      f"CLI exit {cli.returncode}{' with a traceback' * _traceback(cli)}, "
                      f"crisper up {'running' if running_through else 'exited'}")
        # And space is freed again
        filler.unlink()
        scenario.fault_over()
        # Then every job committed (whichever way it was submitted) succeeds, once
        with contextlib.suppress(CrisperError), app.store.read() as session:
            known = set(scenario.ids)
            scenario.ids += [i for i in session.scalars(select(jobs.c.id)) if i not in known]
        figures = scenario.figures(app.store, up.tmp, timeout=30, grace=LEASE)
        try:
            scenario.check(figures, recover_within=20)
        except AssertionError:
            print(_what_up_said(proc.output()))  # for the report: the figures alone cannot tell why
            raise
        assert not raw, raw
        assert cli.returncode in (0, 7) and not _traceback(cli), cli.stdout + cli.stderr
        assert running_through and proc.popen.poll() is None, proc.output()[-3000:]
    finally:
        up.close()


def _what_up_said(log: str) -> str:
    """Its warnings and errors, without the maintenance loops' once-per-tick outage lines."""
    said = [line for line in log.splitlines()
            if any(w in line for w in ("WARNING", "ERROR", "Traceback", "Error:", "lifeline"))
            and "maintenance.loop" not in line]
    return "crisper up said:\n" + "\n".join(said[-80:])


def _traceback(done: subprocess.CompletedProcess[str]) -> bool:
    return "Traceback" in done.stdout + done.stderr


