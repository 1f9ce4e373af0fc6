"""Crisper in a real Django project (tests/djangoproj) on PostgreSQL: transactional submit,
a crash between commit and dispatch, `manage.py migrate` and `manage.py crisper` processes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select, text

from crisper import Crisper, JobNotFound, JobState, Settings
from crisper.embedded import die_with_parent, free_port
from crisper.engine.dispatch import queue_depth
from crisper.store.db import normalize_url
from crisper.store.models import jobs
from tests.harness import PG_BASE, ROOT, Backend, Proc, wait_for

pytest.importorskip("django")
S = JobState
pytestmark = pytest.mark.backends("postgres-redis")
MANAGE = ROOT / "tests" / "djangoproj" / "manage.py"
SCENARIO = "tests.djangoproj.scenario"


class Command(Proc):
    """A process of the test project (manage.py, uvicorn), in its own process group."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = log.open("ab")
        self.popen = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_parent)


def schema_of(backend: Backend) -> str:
    found = re.search(r"search_path%3D(\w+)", backend.env["CRISPER_DATABASE_URL"])
    assert found
    return found.group(1)


def django_env(backend: Backend, schema: str | None = None) -> dict[str, str]:
    return backend.process_env(DJANGO_SETTINGS_MODULE="tests.djangoproj.settings",
                               DJANGO_TEST_SCHEMA=schema or schema_of(backend))


@pytest.fixture
def app(backend: Backend) -> Iterator[Crisper]:
    """The project's Crisper app as seen from outside Django (same database and broker)."""
    app = Crisper("djangoshop", settings=backend.settings)
    app.job(name="shop.confirm")(lambda ctx, order: None)
    yield app
    app.store.close()


def start(backend: Backend, *argv: str) -> Command:
    proc = Command([sys.executable, *argv], django_env(backend),
                   backend.tmp / f"proc{len(backend.procs)}.log")
    backend.procs.append(proc)
    return proc


def manage(backend: Backend, *args: str) -> Command:
    return start(backend, str(MANAGE), *args)


def start_worker(backend: Backend) -> Command:
    name = f"dj-{uuid.uuid4().hex[:6]}@test"
    proc = manage(backend, "crisper", "worker", "--concurrency", "1", "--pool", "prefork",
                  "-n", name, "--without-mingle", "--without-gossip")
    wait_for(lambda: "ready." in proc.output() or proc.popen.poll() is not None, 60,
             "the Django worker to start")
    assert proc.popen.poll() is None, proc.output()[-3000:]
    return proc


def migrate(backend: Backend, schema: str | None = None) -> None:
    """`manage.py migrate`: the project's tables, and Crisper's (already at head here)."""
    done = subprocess.run([sys.executable, str(MANAGE), "migrate"], cwd=ROOT,
                          env=django_env(backend, schema), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]


def scenario(backend: Backend, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", SCENARIO, name], env=django_env(backend),
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_a_job_exists_if_and_only_if_djangos_transaction_commits(
        backend: Backend, app: Crisper) -> None:
    # Given the project's tables (manage.py migrate; Crisper's are already at head)
    migrate(backend)

    # When a view-like scenario rolls one atomic block back and commits another,
    # each creating an order and submitting the job that confirms it
    done = scenario(backend, "commit-and-rollback")
    assert done.returncode == 0, done.stderr[-3000:]
    ids = json.loads(done.stdout.strip().splitlines()[-1])

    # Then the job of the rolled-back block never existed, and the committed one was
    # invisible to other connections until Django committed (it was in Django's transaction)
    with pytest.raises(JobNotFound):
        app.jobs.get(ids["rolled_back"])
    assert ids["visible_before_commit"] is False
    committed = app.get(ids["committed"])
    assert committed.state is S.QUEUED
    assert queue_depth(app.celery, "default") == 1  # woken on commit, exactly once

    # When a worker started with `manage.py crisper worker` runs
    start_worker(backend)

    # Then the committed job runs, and its body sees the order through Django's ORM
    assert ids["orders"] == 1  # the rolled-back order is gone with its job
    assert committed.wait(timeout=30).state is S.SUCCEEDED, committed.error
    assert committed.result == {"order": ids["order"], "updated": 1}


def test_a_crash_between_commit_and_dispatch_loses_no_job(
        backend: Backend, app: Crisper) -> None:
    # Given a process that dies right after Django commits, before the wake-up is sent
    migrate(backend)
    done = scenario(backend, "crash")
    assert done.returncode == 17, done.stderr[-3000:]
    job = app.get(json.loads(done.stdout.strip().splitlines()[-1])["crashed"])
    assert job.state is S.QUEUED
    assert queue_depth(app.celery, "default") == 0  # no message went out
    with app.store.read() as session:
        assert session.execute(select(jobs.c.dispatched_at).where(jobs.c.id == job.id)
                               ).scalar_one() is None

    # When the scheduler (its relay) and a worker run, both through manage.py
    manage(backend, "crisper", "scheduler")
    start_worker(backend)

    # Then the committed job is sent and runs
    assert job.wait(timeout=30).state is S.SUCCEEDED, job.error
    assert job.result["updated"] == 1


def test_manage_py_migrate_brings_crispers_tables_to_head(backend: Backend) -> None:
    # Given an empty schema
    schema = f"dj_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalize_url(PG_BASE))
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        # When Django's own migrate runs on it
        migrate(backend, schema)

        # Then Crisper's tables are there, at head, in their own version table
        url = f"{PG_BASE}?options=-csearch_path%3D{schema}"
        fresh = Crisper("fresh", settings=Settings(database_url=url))
        fresh.job(name="shop.confirm")(lambda ctx, order: None)
        with admin.connect() as conn:
            version = conn.execute(text(f"SELECT version_num FROM {schema}."
                                        "crisper_alembic_version")).scalar_one()
        assert version
        job = fresh.submit("shop.confirm", {"order": 9}, hold=True)
        assert fresh.get(job.id).state is S.HELD
        fresh.store.close()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def test_the_dashboard_and_api_are_served_beside_django_under_a_prefix(
        backend: Backend) -> None:
    # Given the project's ASGI app (Django, with Crisper mounted under /crisper) on uvicorn
    port = free_port()
    server = start(backend, "-m", "uvicorn", "tests.djangoproj.asgi:application",
                   "--port", str(port), "--lifespan", "off")
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/hello").status_code == 200
        except httpx.HTTPError:
            assert server.popen.poll() is None, server.output()[-3000:]
            return False

    wait_for(up, 30, "the ASGI server to start")

    # Then Django answers its routes, and Crisper its own, with its own key auth
    assert httpx.get(f"{base}/hello").text == "hello from django"
    assert httpx.get(f"{base}/crisper/v1/jobs").status_code == 401
    login = httpx.get(f"{base}/crisper/dashboard/login")
    assert login.status_code == 200 and 'action="/crisper/dashboard/login"' in login.text
