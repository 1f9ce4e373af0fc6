"""Time limits (soft, hard) and the cancel grace period per job type, on a real worker."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from crisper import ConfigurationError, Crisper, JobState
from crisper.registry import job_options
from tests.api_support import api_server, key
from tests.apps import limited
from tests.harness import Backend, wait_for

pytestmark = pytest.mark.backends("postgres-redis")
LIMITED = {"CRISPER_APP": "tests.apps.limited"}


@pytest.fixture
def app(backend: Backend) -> Iterator[Crisper]:
    crisper = limited.build(backend.settings)
    yield crisper
    crisper.store.close()


def marks(backend: Backend, job_id: object) -> dict[str, float]:
    return {r.event: r.at for r in backend.probe_rows() if r.job_id == str(job_id)}


@pytest.mark.timeout(120)
def test_a_types_hard_limit_kills_a_body_that_ignores_its_soft_limit(
        backend: Backend, app: Crisper) -> None:
    # Given a type limited to ("1s", "3s") whose body swallows the soft limit, while the app's
    # kill grace is 30 s
    assert app.settings.kill_grace_seconds == 30.0
    worker = backend.start_worker(concurrency=1, **LIMITED)

    # When one runs
    job = app.submit("lim.stubborn", {})

    # Then the soft limit reaches it at 1 s, and the worker kills it at 3 s (not 31 s)
    wait_for(lambda: "Hard time limit" in worker.output(), 60, "the hard limit to strike")
    seen = marks(backend, job.id)
    assert seen["soft"] - seen["start"] == pytest.approx(1.0, abs=0.5)
    assert re.search(r"Hard time limit \(3(\.0)?s\) exceeded for lim\.stubborn", worker.output())
    assert "survived" not in seen


@pytest.mark.timeout(120)
def test_a_types_cancel_grace_replaces_the_apps(backend: Backend, app: Crisper) -> None:
    # Given two running jobs that never look for a cancel: one of a type with a 60 s grace,
    # one using the app's (2 s in these tests)
    backend.start_scheduler(**LIMITED)
    backend.start_worker(concurrency=2, **LIMITED)
    patient = app.submit("lim.patient", {})
    deaf = app.submit("lim.deaf", {})
    wait_for(lambda: marks(backend, patient.id) and marks(backend, deaf.id), 60, "both running")

    # When both are asked to cancel
    app.jobs.cancel(patient.id)
    app.jobs.cancel(deaf.id)
    asked = time.monotonic()

    # Then the app-grace one is stopped after about 2 s; the other is still running after 8 s
    wait_for(lambda: app.jobs.get(deaf.id).state is JobState.CANCELLED, 30, "the forced stop")
    assert time.monotonic() - asked >= 1.5
    time.sleep(max(0.0, 8 - (time.monotonic() - asked)))
    assert app.jobs.get(patient.id).state is JobState.RUNNING
    reasons = [e.reason for e in app.jobs.events(deaf.id)]
    assert "cancel_forced" in reasons


@pytest.mark.parametrize(("timeout", "message"), [
    (("2h", "1h55m"), "must come after"), (("1s",), "soft, hard"), ("soon", "timeout")])
def test_bad_limits_are_refused_at_definition(timeout: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        job_options(timeout=timeout)  # type: ignore[arg-type]


def test_a_soft_and_hard_pair_sets_both_limits() -> None:
    opts = job_options(timeout=("1h55m", "2h"), cancel_grace="45s")
    assert (opts.timeout, opts.hard_timeout, opts.cancel_grace) == (6900.0, 7200.0, 45.0)
    assert opts.kill_grace(30.0) == 300.0 and job_options(timeout="1h").kill_grace(30.0) == 30.0


def test_the_types_endpoint_shows_each_types_own_limits(backend: Backend, app: Crisper) -> None:
    # Given the limited app served over HTTP
    with api_server(app) as url:
        # When a client reads the job types
        got = {t["name"]: t for t in httpx.get(
            f"{url}/v1/types", headers={"Authorization": f"Bearer {key(app)}"},
            timeout=30).json()}

    # Then each shows its soft and hard limits and its cancel grace (own, or the app's)
    assert (got["lim.stubborn"]["timeout"], got["lim.stubborn"]["hard_timeout"]) == (1.0, 3.0)
    assert got["lim.patient"]["cancel_grace"] == 60.0
    assert got["lim.deaf"]["cancel_grace"] == app.settings.cancel_grace_seconds
    assert got["lim.deaf"]["retention"]["failed"] == app.settings.retention_seconds
