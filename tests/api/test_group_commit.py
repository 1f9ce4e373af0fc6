"""The HTTP submit path's group commit and API key memory, against real PostgreSQL and Redis.

Concurrent submits share commits, yet each answer is about its own committed row; a request
that fails (422, 409, a row the database refuses) fails alone; a database outage is a 503;
a revoked key stops working once the server's memory of it lapses (its stated bound).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import event, select

from crisper.api import create_app
from crisper.api.auth import KeyCache
from crisper.app import Crisper
from crisper.embedded import free_port
from crisper.engine.dispatch import queue_depth
from crisper.errors import AccessDenied
from crisper.group_commit import GroupCommit
from crisper.keys import KeyService, Principal
from crisper.records import JobRecord
from crisper.service import SubmitRequest
from crisper.store.models import jobs
from tests.api_support import api_server, key, serve
from tests.harness import Backend

pytestmark = pytest.mark.backends("postgres-redis")
T = TypeVar("T")


def in_parallel(calls: list[Callable[[], T]]) -> list[T]:
    """Run the calls at once, from threads; answers in the calls' order."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result() for f in [pool.submit(c) for c in calls]]


def run_async(coroutine: Any) -> Any:
    """asyncio.run in a thread of its own (a test before may leave a loop in this one)."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


def stored(crisper: Crisper, ids: list[str]) -> dict[str, dict[str, Any]]:
    with crisper.store.read() as session:
        rows = session.execute(select(jobs.c.id, jobs.c.params, jobs.c.tags)
                               .where(jobs.c.id.in_([uuid.UUID(i) for i in ids])))
        return {str(r.id): {"params": r.params, "tags": r.tags} for r in rows}


@contextmanager
def count_commits(crisper: Crisper) -> Iterator[list[int]]:
    commits = [0]

    def seen(_conn: Any) -> None:
        commits[0] += 1

    event.listen(crisper.store.engine, "commit", seen)
    try:
        yield commits
    finally:
        event.remove(crisper.store.engine, "commit", seen)


@pytest.fixture
def http(backend: Backend) -> Iterator[Callable[[], httpx.Client]]:
    with api_server(backend.app) as url:
        headers = {"Authorization": f"Bearer {key(backend.app)}"}
        yield lambda: httpx.Client(base_url=url, headers=headers, timeout=30)


def post(http: Callable[[], httpx.Client], body: dict[str, Any]) -> Callable[[], httpx.Response]:
    def call() -> httpx.Response:
        with http() as client:
            return client.post("/v1/jobs", json=body)
    return call


def test_concurrent_submits_each_get_their_own_committed_row(
        backend: Backend, http: Callable[[], httpx.Client]) -> None:
    # Given 40 clients submitting at once, each with its own number
    answers = in_parallel([post(http, {"type": "probe.echo", "params": {"number": i},
                                       "hold": True}) for i in range(40)])
    # Then each got 202 and an id whose committed row holds its own number
    assert [a.status_code for a in answers] == [202] * 40
    ids = [a.json()["id"] for a in answers]
    rows = stored(backend.app, ids)
    assert len(set(ids)) == len(rows) == 40
    assert [rows[i]["params"]["number"] for i in ids] == list(range(40))
    assert [a.json()["params"]["number"] for a in answers] == list(range(40))


def test_submits_gathered_in_a_window_share_one_commit(backend: Backend) -> None:
    # Given a collector whose window is long enough to gather every waiter
    app = backend.app
    groups = GroupCommit(app.jobs, window=0.5)
    requests = [SubmitRequest("probe.echo", {"number": i}, hold=True) for i in range(30)]

    async def submit_all() -> list[JobRecord]:
        return list(await asyncio.gather(*[groups.submit(r) for r in requests]))

    # When 30 are submitted at once
    with count_commits(app) as commits:
        records = run_async(submit_all())
    groups.close()
    # Then the first went alone (nothing to share with) and the 29 others in one commit
    assert commits == [2]
    rows = stored(app, [str(r.id) for r in records])
    assert [rows[str(r.id)]["params"]["number"] for r in records] == list(range(30))



def test_the_groups_share_one_wake_up_and_no_commit_of_their_own(backend: Backend) -> None:
    # Given a collector and no worker
    app = backend.app
    groups = GroupCommit(app.jobs, window=0.5)
    requests = [SubmitRequest("probe.noop") for _ in range(30)]

    async def submit_all() -> list[JobRecord]:
        return list(await asyncio.gather(*[groups.submit(r) for r in requests]))

    # When 30 runnable jobs are submitted at once, and their wake-ups have gone out
    with count_commits(app) as commits:
        records = run_async(submit_all())
        assert app.jobs.waker.flush()
    groups.close()
    # Then the two groups' commits were the only ones (no second write to mark them sent),
    # every row says its wake-up is out, and one wake-up waits for all of them
    assert commits == [2]
    with app.store.read() as session:
        sent = session.scalars(select(jobs.c.dispatched_at)
                               .where(jobs.c.id.in_([r.id for r in records]))).all()
    assert len(sent) == 30 and all(at is not None for at in sent)
    assert queue_depth(app.celery, records[0].queue) == 1


def test_with_the_broker_down_the_groups_rows_wait_for_the_relay(backend: Backend) -> None:
    app = backend.app_with(broker_url=f"redis://127.0.0.1:{free_port()}/0", broker_prefix="")
    groups = GroupCommit(app.jobs)

    async def submit(count: int) -> list[JobRecord]:
        return list(await asyncio.gather(*[groups.submit(SubmitRequest("probe.noop"))
                                           for _ in range(count)]))

    async def two_groups() -> list[JobRecord]:
        """The first group's wake-up finds no broker; the next group finds the breaker open
        (one event loop for both, as in a server: a collector belongs to its loop)."""
        first = await submit(5)
        assert await asyncio.to_thread(app.jobs.waker.flush)
        return first + await submit(5)

    records = run_async(two_groups())
    assert app.jobs.waker.flush()
    groups.close()
    with app.store.read() as session:
        unsent = session.scalars(select(jobs.c.dispatched_at)
                                 .where(jobs.c.id.in_([r.id for r in records]))).all()
    assert unsent == [None] * 10


def test_a_bad_request_among_good_ones_gets_its_own_422(
        backend: Backend, http: Callable[[], httpx.Client]) -> None:
    good = [post(http, {"type": "probe.echo", "params": {"number": i}, "hold": True})
            for i in range(12)]
    bad = [post(http, {"type": "probe.echo", "params": {"number": "seven"}, "hold": True}),
           post(http, {"type": "probe.ecko", "hold": True})]
    answers = in_parallel(good[:6] + bad + good[6:])
    wrong_type, unknown = answers[6], answers[7]
    assert wrong_type.status_code == 422
    assert wrong_type.json()["errors"][0]["loc"] == ["params", "number"]
    assert unknown.status_code == 422 and "probe.echo" in unknown.json()["known_types"]
    committed = answers[:6] + answers[8:]
    assert [a.status_code for a in committed] == [202] * 12
    rows = stored(backend.app, [a.json()["id"] for a in committed])
    assert sorted(r["params"]["number"] for r in rows.values()) == list(range(12))


def test_key_conflicts_are_answered_to_their_own_requests(
        backend: Backend, http: Callable[[], httpx.Client]) -> None:
    # Given plain submits mixed with repeats of one idempotency key and of one unique key
    plain = [post(http, {"type": "probe.noop", "hold": True}) for _ in range(8)]
    same_key = [post(http, {"type": "probe.noop", "hold": True, "idempotency_key": "once"})
                for _ in range(4)]
    held = in_parallel([post(http, {"type": "probe.noop", "hold": True,
                                    "unique_key": "only"})])[0]
    rejected = [post(http, {"type": "probe.noop", "unique_key": "only",
                            "on_duplicate": "reject"}) for _ in range(3)]
    answers = in_parallel(plain + same_key + rejected)
    # Then the plain ones are new jobs, the keyed ones all name the first, the rejects are 409
    assert [a.status_code for a in answers[:8]] == [202] * 8
    assert len({a.json()["id"] for a in answers[:8]}) == 8
    replays = answers[8:12]
    # (200 says "created before you asked"; requests that arrived together may each see 202)
    assert {a.status_code for a in replays} <= {200, 202}
    assert len({a.json()["id"] for a in replays}) == 1
    with backend.app.store.read() as session:
        assert len(session.execute(select(jobs.c.id).where(
            jobs.c.idempotency_key == "once")).all()) == 1
    assert [a.status_code for a in answers[12:]] == [409] * 3
    assert all(held.json()["id"] in a.json()["detail"] for a in answers[12:])


def test_a_row_the_database_refuses_fails_alone(backend: Backend,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # Given rows of which one passes validation but not the database (a queue too long for
    # its column: what a bug in the row builder would send)
    app = backend.app
    build = app.jobs.prepare_row

    def spoiling(request: SubmitRequest, at: Any) -> dict[str, Any]:
        row = build(request, at)
        if "spoil" in request.tags:
            row["queue"] = "q" * 500
        return row

    monkeypatch.setattr(app.jobs, "prepare_row", spoiling)
    groups = GroupCommit(app.jobs, window=0.5)
    requests = [SubmitRequest("probe.echo", {"number": i}, hold=True,
                              tags=["spoil"] if i == 3 else []) for i in range(8)]

    async def submit_all() -> list[JobRecord | BaseException]:
        return list(await asyncio.gather(*[groups.submit(r) for r in requests],
                                         return_exceptions=True))

    outcomes = run_async(submit_all())
    groups.close()
    # Then only that one failed, and every other row is committed
    assert [isinstance(o, JobRecord) for o in outcomes] == [i != 3 for i in range(8)]
    fine = [o for o in outcomes if isinstance(o, JobRecord)]
    assert len(stored(app, [str(r.id) for r in fine])) == 7


def test_a_database_outage_answers_every_waiter_with_a_503(backend: Backend) -> None:
    # Given a server whose database is unreachable, and a caller whose key it remembers
    crisper = backend.app_with(database_url="postgresql://postgres@127.0.0.1:1/test")
    api = create_app(crisper)
    secret = "crisper_remembered"
    api.state.key_cache.remember(secret, Principal("key_x", "acme", frozenset({"write"})))
    with serve(api) as url, httpx.Client(base_url=url, timeout=30, headers={
            "Authorization": f"Bearer {secret}"}) as client:
        answers = in_parallel([lambda: client.post("/v1/jobs", json={"type": "probe.noop"})
                               for _ in range(5)])
    # Then each got a 503 that names the database, none a stack trace
    assert [a.status_code for a in answers] == [503] * 5
    assert all(a.json()["detail"].startswith("the database is unavailable") for a in answers)


def test_a_revoked_key_is_refused_once_its_memory_lapses(backend: Backend) -> None:
    # Given a key verified once, remembered for 2 s on a clock we move
    keys = KeyService(backend.app.store)
    new = keys.create("acme", ["read"])
    now = [1000.0]
    cache = KeyCache(keys, seconds=2.0, clock=lambda: now[0])
    assert run_async(cache.authenticate(new.secret)).tenant == "acme"
    # When it is revoked, it is still taken within the bound, and refused after it
    keys.revoke(new.record.id)
    now[0] += 1.9
    assert run_async(cache.authenticate(new.secret)).key_id == new.record.id
    now[0] += 0.2
    with pytest.raises(AccessDenied, match="revoked"):
        run_async(cache.authenticate(new.secret))
    # And a refused key is never remembered
    with pytest.raises(AccessDenied):
        run_async(cache.authenticate(new.secret))


def test_with_no_memory_a_revoked_key_is_refused_at_once(backend: Backend) -> None:
    crisper = backend.app_with(api_key_cache_seconds=0)
    keys = KeyService(crisper.store)
    new = keys.create("acme", ["read"])
    with api_server(crisper) as url, httpx.Client(base_url=url, timeout=30, headers={
            "Authorization": f"Bearer {new.secret}"}) as client:
        assert client.get("/v1/jobs").status_code == 200
        keys.revoke(new.record.id)
        assert client.get("/v1/jobs").status_code == 401
