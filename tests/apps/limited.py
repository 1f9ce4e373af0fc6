"""A test app with per-type time limits and cancel grace periods."""

from __future__ import annotations

import time

from celery.exceptions import SoftTimeLimitExceeded

from crisper import Crisper, JobContext, Retry, Settings
from tests.apps import probe


def build(settings: Settings | None = None) -> Crisper:
    app = Crisper("limited", settings=settings)
    app.job(name="lim.stubborn", timeout=("1s", "3s"), retry=Retry(attempts=1))(stubborn)
    app.job(name="lim.patient", cancel_grace="60s")(deaf)
    app.job(name="lim.deaf")(deaf)
    # Long limits of its own: a submit's limits replace them (tests/integration/test_submit_limits)
    app.job(name="lim.lenient", timeout=("1h", "2h"), retry=Retry(attempts=1))(stubborn)
    return app


def stubborn(ctx: JobContext, seconds: float = 20.0) -> None:
    """Ignores its soft time limit: only the hard one stops it."""
    probe.mark(ctx, "start")
    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        probe.mark(ctx, "soft")
        time.sleep(seconds)
    probe.mark(ctx, "survived")


def deaf(ctx: JobContext, seconds: float = 60.0) -> None:
    """Never checks for a cancel."""
    probe.mark(ctx, "start")
    time.sleep(seconds)


crisper = build()
