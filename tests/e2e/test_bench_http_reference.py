"""The HTTP benchmark's yardstick (bench/apps/minimal_insert.py) does what its figures claim:
each 201 is one committed row, and a bad body stores nothing."""

from __future__ import annotations

import httpx
from sqlalchemy import create_engine, func, select

from bench.apps.minimal_insert import create_app, metadata, minimal_jobs
from crisper.store.db import normalize_url
from tests.api_support import serve
from tests.conftest import require
from tests.harness import _postgres_schema


def test_the_minimal_insert_commits_one_row_per_created_answer() -> None:
    # Given PostgreSQL and the yardstick's table in a schema of its own
    require("postgres")
    with _postgres_schema() as url:
        engine = create_engine(normalize_url(url))
        metadata.create_all(engine)

        # When it is sent two jobs and one body that is not a job
        with serve(create_app(normalize_url(url))) as base, httpx.Client(base_url=base) as client:
            created = [client.post("/v1/jobs", json={"type": "demo", "params": {"n": i}})
                       for i in range(2)]
            refused = client.post("/v1/jobs", json={"params": {}})

        # Then each job was answered 201 with its id and stored; the bad body was refused
        assert [r.status_code for r in created] == [201, 201]
        assert refused.status_code == 422 and "type" in refused.text
        with engine.connect() as conn:
            stored = conn.execute(select(minimal_jobs.c.id, minimal_jobs.c.params)
                                  .order_by(minimal_jobs.c.created_at)).all()
            assert conn.scalar(select(func.count()).select_from(minimal_jobs)) == 2
        assert [str(row.id) for row in stored] == [r.json()["id"] for r in created]
        assert [row.params for row in stored] == [{"n": 0}, {"n": 1}]
        engine.dispose()
