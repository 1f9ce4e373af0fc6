"""The yardstick for HTTP submit: about the least a FastAPI POST that stores a job does.

Issue 11 set its HTTP targets against such an endpoint on the machine it was measured on (a
minimal FastAPI POST inserting one row reached about 1,800/s on one process there). Machines
differ by more than that margin, so `bench.http_submit` serves this app next to `crisper api`
in the same run and prints both.

One table, one async SQLAlchemy engine on psycopg, one INSERT committed per request (with the
server's fsync and synchronous_commit), FastAPI's body model as the only validation, no
authentication, no broker. Served by uvicorn:
`MINIMAL_DATABASE_URL=postgresql+psycopg://… uvicorn bench.apps.minimal_insert:app`.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field
from sqlalchemy import Column, DateTime, MetaData, String, Table, Uuid
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import create_async_engine

metadata = MetaData()
minimal_jobs = Table(
    "minimal_jobs", metadata,
    Column("id", Uuid, primary_key=True),
    Column("type", String(200), nullable=False),
    Column("params", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


class Submit(BaseModel):
    type: str = Field(max_length=200)
    params: dict[str, Any] = Field(default_factory=dict)


def create_app(database_url: str) -> FastAPI:
    engine = create_async_engine(database_url, pool_size=10)
    app = FastAPI()

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/jobs", status_code=201)
    async def submit(body: Submit) -> dict[str, str]:
        job_id = uuid.uuid4()
        async with engine.begin() as conn:
            await conn.execute(minimal_jobs.insert().values(
                id=job_id, type=body.type, params=body.params, created_at=datetime.now(UTC)))
        return {"id": str(job_id)}

    return app


if "MINIMAL_DATABASE_URL" in os.environ:  # served by uvicorn (see above); importable without
    app = create_app(os.environ["MINIMAL_DATABASE_URL"])
