"""examples/celery_adopt: the same callers against the plain Celery app, the wrapped one and the
one with half its tasks moved, on real workers (`celery -A` and `crisper worker`), a real Redis
broker and PostgreSQL. Old-format messages sent before the move all end as succeeded jobs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from crisper.store.db import normalize_url
from tests.conftest import require
from tests.harness import FAST, _postgres_schema, _redis_prefix, wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "celery_adopt"
QUEUES = "mail,campaigns,scrape,ai,general"


@dataclass
class Project:
    """One stage of the example on this test's own database schema and Redis key prefix."""

    db_url: str
    broker: str
    prefix: str
    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self, stage: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CRISPER_", "PROJ_"))}
        env.update(FAST)
        env.update(PYTHONPATH=f"{EXAMPLE / stage}:{EXAMPLE}", CRISPER_DATABASE_URL=self.db_url,
                   CRISPER_BROKER_PREFIX=self.prefix, PROJ_BROKER_URL=self.broker,
                   PROJ_RESULT_BACKEND=self.broker, PROJ_KEY_PREFIX=self.prefix,
                   PROJ_MARKS=str(self.tmp / "marks.txt"))
        return env

    def start(self, stage: str, args: list[str], log: str) -> subprocess.Popen[bytes]:
        with (self.tmp / log).open("ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", *args], env=self.env(stage),
                                    cwd=EXAMPLE, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    def worker(self, stage: str, kind: str) -> subprocess.Popen[bytes]:
        name = f"{kind}{len(self.procs)}@test"
        celery_args = ["-Q", QUEUES, "-c", "2", "-n", name, "--without-mingle",
                       "--without-gossip"]
        args = (["celery", "-A", "proj", "worker", "--loglevel", "INFO", *celery_args]
                if kind == "celery" else ["crisper", "--app", "proj", "worker", *celery_args])
        log = f"{name}.log"
        proc = self.start(stage, args, log)
        wait_for(lambda: self._ready(proc, log), 60, f"{kind} worker to start")
        return proc

    def _ready(self, proc: subprocess.Popen[bytes], log: str) -> bool:
        output = (self.tmp / log).read_text(errors="replace")
        if proc.poll() is not None:
            raise AssertionError(f"worker exited:\n{output[-3000:]}")
        return "ready." in output

    def scheduler(self, stage: str) -> None:
        self.start(stage, ["crisper", "--app", "proj", "scheduler"], "scheduler.log")

    def run(self, stage: str, step: str, stdin: str = "") -> Any:
        done = subprocess.run([sys.executable, "-m", "tests.driver", step], env=self.env(stage),
                              cwd=EXAMPLE, input=stdin, capture_output=True, text=True,
                              timeout=300)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        assert done.returncode == 0 and lines, done.stdout[-2000:] + done.stderr[-4000:]
        return json.loads(lines[-1].removeprefix("RESULT "))

    def marks(self) -> list[str]:
        path = self.tmp / "marks.txt"
        return path.read_text().splitlines() if path.exists() else []

    def jobs(self) -> list[dict[str, Any]]:
        engine = create_engine(normalize_url(self.db_url))
        try:
            with engine.connect() as conn:
                rows = conn.execute(text(
                    "SELECT id, type, state, attempt, queue, priority, result, run_at, source "
                    "FROM crisper_jobs")).mappings().all()
                return [dict(r) for r in rows]
        finally:
            engine.dispose()

    def workers(self) -> list[str]:
        engine = create_engine(normalize_url(self.db_url))
        try:
            with engine.connect() as conn:
                return list(conn.execute(text("SELECT name FROM crisper_workers")).scalars())
        finally:
            engine.dispose()

    def create_schema(self) -> None:
        done = subprocess.run(
            [sys.executable, "-c", "import proj; proj.crisper.store.create_all()"],
            env=self.env("stage3_moved"), cwd=EXAMPLE, capture_output=True, text=True,
            timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]

    def stop(self) -> None:
        for proc in self.procs:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        self.procs.clear()

    def full_log(self, containing: str) -> str:
        """The lines of every process's log that contain `containing`."""
        return "\n".join(line for p in self.tmp.glob("*.log")
                         for line in p.read_text(errors="replace").splitlines()
                         if containing in line)

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in self.tmp.glob("*.log"))


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    require("postgres")
    require("redis")
    with _postgres_schema() as db_url, _redis_prefix() as (broker, prefix):
        p = Project(db_url, broker, prefix, tmp_path)
        p.create_schema()
        try:
            yield p
        finally:
            p.stop()


@contextmanager
def explained(project: Project) -> Iterator[None]:
    """On a failure, show the processes' logs."""
    try:
        yield
    except BaseException:
        print(project.logs())
        raise


def check_callers(seen: dict[str, Any]) -> None:
    """What every stage's callers must see: the same results in Celery's vocabulary."""
    assert seen["welcome"] == "welcome sent to user 7"
    assert seen["digest"] == {"user": 7, "items": 3}
    assert seen["bounce"] == {"address": "a@example.com", "bounced": False, "tries": 2}
    assert seen["launch"] == "campaign 5 launched to beta"
    assert seen["report"] == {"campaign": 4, "opens": 12}
    assert seen["fetch"] == "<html>https://flaky.example.com/</html>"
    assert seen["crawl"] == ["https://example.com/0", "https://example.com/1"]
    assert seen["summary"] == "a long text to be su"
    assert seen["classify"] == "ham"
    assert seen["add"] == 5
    for name in ("welcome", "bounce", "launch", "fetch", "crawl", "summary", "add"):
        assert seen[f"{name}_state"] == "SUCCESS"
        assert seen[f"{name}_status"][0] == "SUCCESS"
    assert (seen["stuck_get"], seen["stuck_state"]) == ("SoftTimeLimitExceeded", "FAILURE")
    assert seen["slow_state"] == "REVOKED"
    assert seen["slow_get"] in ("TaskRevokedError",)


@pytest.mark.parametrize("stage", ["stage1_plain", "stage2_wrapped"])
def test_callers_before_any_task_moves(project: Project, stage: str) -> None:
    with explained(project):
        project.worker(stage, "celery")
        seen = project.run(stage, "calls")
        check_callers(seen)
        sources = {job["source"] for job in project.jobs()}
        # Nothing moved: no job Crisper runs; once wrapped, the app's tasks are observed
        assert sources == (set() if stage == "stage1_plain" else {"observed"})
        assert "slow 60" not in project.marks()


@pytest.mark.parametrize("kind", ["celery", "crisper"])
def test_moved_tasks_keep_their_callers_and_lose_nothing_in_flight(project: Project,
                                                                   kind: str) -> None:
    with explained(project):
        in_flight = project.run("stage1_plain", "send_old")  # sent before the deploy
        project.run("stage1_plain", "send_garbage")  # and messages no task can take
        project.scheduler("stage3_moved")
        worker = project.worker("stage3_moved", kind)
        seen = project.run("stage3_moved", "calls")
        check_callers(seen)

        jobs = {str(j["id"]): j for j in project.jobs()}
        for name in ("welcome", "bounce", "launch", "fetch", "crawl", "summary", "add", "slow"):
            assert seen[f"{name}_id"] in jobs, name  # each moved call made a durable job
        assert jobs[seen["bounce_id"]]["attempt"] == 2  # self.retry(): a second attempt
        assert jobs[seen["fetch_id"]]["attempt"] == 2  # autoretry_for
        assert jobs[seen["crawl_id"]]["priority"] == 255  # Redis priority 0: runs first
        assert jobs[seen["launch_id"]]["queue"] == "campaigns"  # where Celery routed it
        assert jobs[seen["slow_id"]]["state"] == "cancelled"
        assert jobs[seen["stuck_id"]]["state"] == "failed"  # its soft time limit, under -A too

        def all_done() -> dict[str, Any] | None:
            got = project.run("stage3_moved", "states", json.dumps(in_flight))
            return got if all(v[0] == "SUCCESS" for v in got.values()) else None

        states = wait_for(all_done, 120, "the in-flight messages to succeed", every=2)
        assert states["add 100 100"] == ["SUCCESS", 200]
        for line, task_id in in_flight.items():
            assert task_id in jobs or task_id in {str(j["id"]) for j in project.jobs()}
            assert project.marks().count(line) == 1, line  # ran to its end exactly once
        adopted = [j for j in project.jobs() if str(j["id"]) in in_flight.values()]
        assert len(adopted) == len(in_flight)
        assert all(j["state"] == "succeeded" for j in adopted)
        assert "slow 60" not in project.marks()
        delayed = next(j for j in adopted if str(j["id"]) == in_flight["add 100 100"])
        assert delayed["run_at"] is not None  # its countdown became a database timer
        assert any(name.startswith(kind) for name in project.workers())  # registered
        assert worker.poll() is None  # the garbage was refused, the worker went on
        assert project.full_log("refused a message").count("refused") == 3
