"""Named limits shared by several job types hold across workers, and their state is visible."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest
from sqlalchemy import select

from crisper import Crisper, JobState, SubmitRequest
from crisper.store.models import jobs
from tests.api_support import api_server, key
from tests.apps import shared
from tests.harness import Backend, wait_for

pytestmark = pytest.mark.backends("postgres-redis")
SHARED_APP = {"CRISPER_APP": "tests.apps.shared"}


@pytest.fixture
def app(backend: Backend) -> Iterator[Crisper]:
    crisper = shared.build(backend.settings)
    yield crisper
    crisper.store.close()


def start_times(app: Crisper, ids: set[str]) -> list[datetime]:
    with app.store.read() as session:
        rows = session.execute(select(jobs.c.id, jobs.c.started_at)
                               .where(jobs.c.started_at.is_not(None)))
        return sorted(r.started_at for r in rows if str(r.id) in ids)


def deferred_now(app: Crisper, name: str) -> int:
    return next(s.deferred for s in app.limit_view.states() if s.name == name)


@pytest.mark.timeout(300)
def test_two_job_types_share_one_rate_limit_across_three_workers(
        backend: Backend, app: Crisper) -> None:
    # Given 30 jobs of each of two types drawing on one "mail" limit of 10 per 2 s (burst 2)
    requests = [SubmitRequest(t, {"n": i}) for i in range(30)
                for t in ("shared.welcome", "shared.digest")]
    ids = {str(j.id) for j in app.submit_many(requests)}

    # When three workers (six slots) and a scheduler drain them
    backend.start_scheduler()
    for _ in range(3):
        backend.start_worker(concurrency=2, **SHARED_APP)
    most_deferred = 0

    def drained() -> bool:
        nonlocal most_deferred
        most_deferred = max(most_deferred, deferred_now(app, "mail"))
        return len(start_times(app, ids)) == len(ids)

    wait_for(drained, 240, "all 60 jobs to start", every=0.1)  # deferrals can be short
    times = [t.timestamp() for t in start_times(app, ids)]

    # Then the k-th start came no earlier than the limit allows for both types together:
    # burst at once, then one start per interval (a job never starts before its slot, so
    # pickup delays can only make this looser, never break it)
    interval = shared.MAIL_PERIOD / shared.MAIL_LIMIT
    early = [k for k, t in enumerate(times)
             if t - times[0] < (k - (shared.MAIL_BURST - 1)) * interval - 0.05]
    assert early == [], f"starts ahead of the shared limit: {early}"
    mean_rate = (len(times) - 1) / (times[-1] - times[0])
    busiest = max(sum(1 for u in times if t <= u < t + shared.MAIL_PERIOD) for t in times)
    print(f"\nshared mail limit {shared.MAIL_LIMIT}/{shared.MAIL_PERIOD:g}s burst "
          f"{shared.MAIL_BURST}, 2 types, 3 workers: mean {mean_rate:.2f} starts/s over "
          f"{len(times)} starts; busiest {shared.MAIL_PERIOD:g} s window {busiest}; "
          f"most deferred seen {most_deferred}")
    assert mean_rate <= 1.05 * shared.MAIL_LIMIT / shared.MAIL_PERIOD
    # And both types drew on it, waits spent no attempt, and the view saw the waiting jobs
    with app.store.read() as session:
        rows = session.execute(select(jobs.c.type, jobs.c.attempt).where(
            jobs.c.state == JobState.SUCCEEDED.value)).all()
    assert {r.type for r in rows} == {"shared.welcome", "shared.digest"}
    assert {r.attempt for r in rows} == {1}
    assert most_deferred > 0


@pytest.mark.timeout(180)
def test_two_job_types_share_one_concurrency_limit(backend: Backend, app: Crisper) -> None:
    # Given a "gpu" limit of 2 shared by render and train, and two workers with six slots
    backend.start_scheduler()
    backend.start_worker(concurrency=3, **SHARED_APP)
    backend.start_worker(concurrency=3, **SHARED_APP)
    seen: list[tuple[int | None, int]] = []

    # When three jobs of each type arrive (after the workers are up, so that the limits view
    # is watched from the first start: a slow worker start-up could otherwise hide every run)
    ids = [app.submit(t, {"seconds": 1.0}).id for t in ("shared.render", "shared.train")
           for _ in range(3)]

    def finished() -> bool:
        gpu = next(x for x in app.limit_view.states() if x.name == "gpu")
        seen.append((gpu.running, gpu.deferred))
        return all(app.jobs.get(i).state is JobState.SUCCEEDED for i in ids)

    wait_for(finished, 120, "all six jobs to succeed", every=0.2)

    # Then never more than two ran at once, across both types, and two did run together
    spans: dict[str, list[float]] = {}
    for row in backend.probe_rows():
        spans.setdefault(row.job_id, []).append(row.at)
    edges = sorted([(min(v), 1) for v in spans.values()] + [(max(v), -1) for v in spans.values()],
                   key=lambda e: (e[0], e[1]))
    running, most = 0, 0
    for _, step in edges:
        running += step
        most = max(most, running)
    assert len(spans) == 6
    assert most == shared.GPU_SLOTS, most
    assert all(app.jobs.get(i).attempt == 1 for i in ids)
    # And the limits view showed at most two holding a slot, and others deferred by it
    assert max(r or 0 for r, _ in seen) == shared.GPU_SLOTS
    assert max(d for _, d in seen) > 0


def test_the_limits_view_shows_tokens_running_and_deferred_over_http(
        backend: Backend, app: Crisper) -> None:
    # Given the shared app, with nothing run yet
    with api_server(app) as url:
        http = httpx.Client(base_url=url, timeout=30,
                            headers={"Authorization": f"Bearer {key(app)}"})
        # When an operator asks for the limits
        got = {(s["name"], s["kind"]): s for s in http.get("/v1/limits").json()}
        http.close()

    # Then each shared limit appears once, with the types drawing on it and its state
    mail = got[("mail", "rate")]
    assert mail["shared"] is True and mail["types"] == ["shared.digest", "shared.welcome"]
    assert (mail["limit"], mail["period_seconds"], mail["burst"]) == (10, 2.0, 2)
    assert mail["tokens"] == 2 and mail["deferred"] == 0 and mail["keyed"] is False
    hosts = got[("hosts", "rate")]
    assert hosts["keyed"] is True and hosts["tokens"] is None
    gpu = got[("gpu", "concurrency")]
    assert gpu["types"] == ["shared.render", "shared.train"]
    assert (gpu["limit"], gpu["running"], gpu["deferred"]) == (2, 0, 0)
    # And taking a token shows: the bucket is the limit's, not the type's
    app.flow.buckets.reserve("@mail", app.registry.get("shared.welcome").options.flow.rate_limit)
    assert next(s.tokens for s in app.limit_view.states() if s.name == "mail") == 1
