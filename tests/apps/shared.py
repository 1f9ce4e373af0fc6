"""A test app whose job types share named limits: two mailers on one rate, two GPU users."""

from __future__ import annotations

import time

from crisper import Crisper, JobContext, Settings
from tests.apps import probe

# Scaled down from the seeds' "50/m shared by four e-mail job types".
MAIL_LIMIT = 10
MAIL_PERIOD = 2.0
MAIL_BURST = 2
GPU_SLOTS = 2


def build(settings: Settings | None = None) -> Crisper:
    app = Crisper("shared", settings=settings)
    mail = app.rate_limit("mail", f"{MAIL_LIMIT}/{MAIL_PERIOD:g}s", burst=MAIL_BURST)
    gpu = app.concurrency_limit("gpu", GPU_SLOTS)
    app.job(name="shared.welcome", rate_limit=mail)(send)
    app.job(name="shared.digest", rate_limit=mail)(send)
    app.job(name="shared.per_host", rate_limit=app.rate_limit("hosts", "1/10s"),
            rate_key="host")(per_host)
    app.job(name="shared.render", concurrency=gpu)(busy)
    app.job(name="shared.train", concurrency=gpu)(busy)
    return app


def send(ctx: JobContext, n: int) -> int:
    return n


def per_host(ctx: JobContext, host: str) -> str:
    return host


def busy(ctx: JobContext, seconds: float = 1.0) -> None:
    probe.mark(ctx, "start")
    time.sleep(seconds)
    probe.mark(ctx, "end")


crisper = build()
