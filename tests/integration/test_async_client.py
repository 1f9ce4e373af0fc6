"""crisper.AsyncClient against a real API server and worker: the sync client's twin for asyncio."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from crisper import AsyncClient, DuplicateJob, InvalidParams, JobNotFound, JobState
from tests.api_support import api_server, key
from tests.harness import Backend


def test_async_client_submits_waits_streams_and_steers(backend: Backend) -> None:
    backend.start_worker()

    async def scenario(url: str, secret: str) -> None:
        async with AsyncClient(url, secret) as client:
            # A job submitted and awaited ends succeeded, with its result
            job = await client.submit("probe.chatty", {"lines": 2, "steps": 2})
            done = await client.wait(job.id, timeout=30)
            assert done.state is JobState.SUCCEEDED

            # Its stream, read after the fact, replays every state to the final one
            events = [e async for e in client.stream(job.id)]
            assert [e.data["state"] for e in events if e.kind == "state"] == \
                ["queued", "running", "succeeded"]
            assert sorted(e.data["message"] for e in events if e.kind == "log") == \
                ["line 0", "line 1"]

            # Several requests at once on one client
            many = await asyncio.gather(*(client.submit("probe.noop", hold=True)
                                          for _ in range(5)))
            assert len({j.id for j in many}) == 5
            listed = await client.list_jobs(states=["held"], limit=10)
            assert {j.id for j in listed} == {j.id for j in many}
            started = await client.start(many[0].id)
            assert started.state is JobState.QUEUED
            cancelled = await client.cancel(many[1].id)
            assert cancelled.state is JobState.CANCELLED

            # Problems come back as the same exceptions the sync client raises
            with pytest.raises(JobNotFound):
                await client.get("0193a0b0-0000-7000-8000-000000000000")
            with pytest.raises(InvalidParams):
                await client.submit("probe.steps", {"steps": "many"})
            first = await client.submit("probe.noop", hold=True, unique_key="only-one")
            with pytest.raises(DuplicateJob) as dup:
                await client.submit("probe.noop", unique_key="only-one", on_duplicate="reject")
            assert dup.value.existing == str(first.id)

    # In a thread of its own: when the browser tests ran first, Playwright's sync API keeps
    # an event loop running in the main thread, and asyncio.run() refuses to start there.
    with api_server(backend.app) as url, ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, scenario(url, key(backend.app))).result()
