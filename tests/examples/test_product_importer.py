"""The product importer end to end: uploads imported by real worker processes into
PostgreSQL, polled and revoked over HTTP, results expiring, old uploads cleaned up."""

from __future__ import annotations

import io
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from product_importer import api as importer_api
from product_importer import jobs as importer
from sqlalchemy import func, select

from bench import gen_products
from crisper import Crisper, JobState
from tests.api_support import serve
from tests.examples.conftest import EXAMPLES
from tests.harness import ROOT, Backend, wait_for

pytestmark = [pytest.mark.backends("postgres-redis"), pytest.mark.slow]
TASK = "/api/v1/celery/task"


class Site:
    """The example as deployed: its API here; a worker and a scheduler as processes."""

    def __init__(self, app: Crisper, client: httpx.Client, folder: Path) -> None:
        self.app, self.client, self.folder = app, client, folder

    def upload(self, data: bytes) -> str:
        answer = self.client.post("/api/v1/products/import",
                                  files={"file": ("products.csv", io.BytesIO(data))})
        assert answer.status_code == 202, answer.text
        task_id: str = answer.json()["task_id"]
        return task_id

    def task(self, task_id: str) -> dict[str, Any]:
        got: dict[str, Any] = self.client.get(f"{TASK}/{task_id}").json()
        return got

    def until(self, task_id: str, status: str, timeout: float = 120) -> dict[str, Any]:
        found: dict[str, Any] = wait_for(
            lambda: (t := self.task(task_id))["status"] == status and t, timeout,
            f"task {task_id} to be {status}", every=0.2)
        return found

    def products(self) -> int:
        with self.app.store.read() as s:
            return int(s.scalar(select(func.count()).select_from(importer.products)) or 0)


@contextmanager
def deployed(backend: Backend, **env: str) -> Iterator[Site]:
    folder = backend.tmp / "imports"
    env = {"CRISPER_APP": "product_importer.jobs", "PYTHONPATH": f"{ROOT}:{EXAMPLES}",
           "PRODUCTS_IMPORT_DIR": str(folder), **env}
    config = replace(importer.Config(), import_dir=folder,
                     result_ttl=env.get("PRODUCTS_RESULT_TTL", "1h"))
    app = importer.build(backend.settings, config)
    with serve(importer_api.create_api(app, config)) as url, \
            httpx.Client(base_url=url, timeout=30) as client:
        backend.start_scheduler(**env)
        backend.start_worker(concurrency=2, extra=["-Q", "imports,default"], **env)
        try:
            yield Site(app, client, folder)
        finally:
            app.store.close()


def csv_bytes(path: Path, rows: int, bad_every: int = 0) -> bytes:
    gen_products.write(path, rows, bad_every=bad_every)
    return path.read_bytes()


@pytest.mark.timeout(300)
def test_an_upload_is_imported_and_polled_with_bad_rows_named_by_line(backend: Backend) -> None:
    with deployed(backend) as site:
        # Given the workers endpoint shows the running worker and the job types
        workers = site.client.get("/api/v1/celery/workers").json()["workers"]
        assert set(workers["registered_tasks"]) == {importer.IMPORT, importer.TEST,
                                                    importer.CLEANUP}
        assert any(s["status"] == "alive" and "imports" in s["queues"]
                   for s in workers["stats"].values())
        # and the test task runs
        test = site.client.post("/api/v1/celery/test").json()
        assert test["status"] == "submitted"
        assert site.until(test["task_id"], "SUCCESS")["result"]["status"] == "success"

        # When a 3000-row file with three spoiled rows (a wrong type, missing columns, a bad
        # byte) is uploaded
        task_id = site.upload(csv_bytes(backend.tmp / "p.csv", 3000, bad_every=1000))

        # Then the task succeeds; each bad row is reported by its line, the others stored
        done = site.until(task_id, "SUCCESS")
        result = done["result"]
        assert (result["rows"], result["imported"], result["rejected"]) == (3000, 2997, 3)
        reasons = {e["line"]: e["reason"] for e in result["errors"]}
        assert sorted(reasons) == [1001, 2001, 3001]
        assert reasons[1001].startswith("stock: Input should be a valid integer")
        assert reasons[2001] == "5 fields, the header has 12: missing columns"
        assert reasons[3001] == "not valid text in the file's encoding"
        assert site.products() == 2997 and done["progress"]["percent"] == 100.0

        # And an id it never issued is 404 (never PENDING), and a finished task cannot be
        # revoked
        for unknown in (str(uuid.uuid4()), "not-a-task"):
            assert site.client.get(f"{TASK}/{unknown}").status_code == 404
            assert site.client.delete(f"{TASK}/{unknown}").status_code == 404
        assert site.client.delete(f"{TASK}/{task_id}").status_code == 409


@pytest.mark.timeout(300)
def test_delete_stops_a_running_import_and_rolls_it_back(backend: Backend) -> None:
    with deployed(backend, PRODUCTS_CHUNK_ROWS="500") as site:
        # Given an import of 400,000 rows running (in 800 chunks: seconds of work)
        task_id = site.upload(csv_bytes(backend.tmp / "big.csv", 400_000))
        wait_for(lambda: (t := site.task(task_id))["status"] == "STARTED"
                 and (t["progress"]["current"] or 0) > 0, 120, "the import to be under way",
                 every=0.1)

        # When it is revoked
        answer = site.client.delete(f"{TASK}/{task_id}")
        assert answer.status_code == 202, answer.text

        # Then it stops, is recorded as cancelled, and none of its rows are in the table
        revoked = site.until(task_id, "REVOKED", timeout=60)
        assert revoked["state"] == "cancelled" and revoked["result"] is None
        record = site.app.jobs.get(task_id)
        assert record.state is JobState.CANCELLED and record.cancelled_at is not None
        assert site.products() == 0
        # and the worker goes on with the next task
        test = site.client.post("/api/v1/celery/test").json()["task_id"]
        site.until(test, "SUCCESS")


@pytest.mark.timeout(300)
def test_results_expire_and_old_uploads_are_cleaned_up(backend: Backend) -> None:
    with deployed(backend, PRODUCTS_RESULT_TTL="3s") as site:
        # Given a finished task whose result is kept for 3 s (1 h by default)
        task_id = site.client.post("/api/v1/celery/test").json()["task_id"]
        site.until(task_id, "SUCCESS")

        # Then, once its time is up, it is gone: 404, not PENDING
        wait_for(lambda: site.client.get(f"{TASK}/{task_id}").status_code == 404, 60,
                 "the result to expire", every=0.5)

        # Given an upload two hours old and a fresh one
        uploads = site.folder / "uploads"
        uploads.mkdir(parents=True, exist_ok=True)
        old, fresh = uploads / "old.csv", uploads / "fresh.csv"
        for path in (old, fresh):
            path.write_text(gen_products.HEADER + "\n")
        two_hours_ago = time.time() - 7200
        os.utime(old, (two_hours_ago, two_hours_ago))

        # When the cleanup declared in code runs (its schedule, run now)
        wait_for(lambda: importer.CLEANUP in {
            s.name for s in site.app.schedules.list_schedules()}, 60,
            "the scheduler to sync the code schedule")
        job = site.app.schedules.run_now(importer.CLEANUP)
        done = site.until(str(job.id), "SUCCESS")

        # Then the old upload is removed and the fresh one kept
        assert done["result"] == {"removed": 1, "kept": 1}
        assert not old.exists() and fresh.exists()
