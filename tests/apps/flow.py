"""A test app for flow control: rate-limited, per-tenant concurrency-limited and unique jobs."""

from __future__ import annotations

import time

from crisper import Crisper, JobContext, Settings
from tests.apps import probe

RATE = "60/m"
BURST = 3


def build(settings: Settings | None = None) -> Crisper:
    app = Crisper("flow", settings=settings)
    app.job(name="flow.tick", rate_limit=RATE, burst=BURST)(tick)
    app.job(name="flow.campaign", concurrency=1, concurrency_key="customer")(campaign)
    app.job(name="flow.import", concurrency=2)(import_)
    app.job(name="flow.unique", unique="key")(unique)
    app.job(name="flow.sleep")(probe.sleep)
    return app


def tick(ctx: JobContext, n: int) -> int:
    return n


def campaign(ctx: JobContext, customer: str, seconds: float = 1.0) -> None:
    probe.mark(ctx, "start")
    time.sleep(seconds)
    probe.mark(ctx, "end")


def import_(ctx: JobContext, seconds: float = 1.0) -> None:
    probe.mark(ctx, "start")
    time.sleep(seconds)
    probe.mark(ctx, "end")


def unique(ctx: JobContext, key: str, other: int = 0) -> str:
    time.sleep(0.5)
    return key


crisper = build()
