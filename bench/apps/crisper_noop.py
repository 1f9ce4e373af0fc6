"""Crisper's no-op job type, run by `crisper --app bench.apps.crisper_noop worker`."""

from __future__ import annotations

import os

from bench.apps import probes
from crisper import Crisper, JobContext, Settings

JOB = "bench.noop"


def build(settings: Settings | None = None, queue: str | None = None) -> Crisper:
    app = Crisper("bench_crisper", settings=settings)

    @app.job(name=JOB, queue=queue or os.environ.get("BENCH_QUEUE", "default"))
    def noop(ctx: JobContext) -> None:
        probes.mark_started()

    return app


app = build()
probes.install()
