"""Celery's canvas on Crisper job types: a Celery app with NO result backend, wrapped by
Crisper, whose tasks are moved (Celery-style functions), plus one ctx-first Crisper type.

Settings come from the CRISPER_* environment, as in a team's deployment; the test process
builds its own copy with `build(settings)`.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from crisper import Crisper, JobContext, Retry, Settings

QUEUE = "canvas"


def build(settings: Settings) -> tuple[Celery, Crisper]:
    app = Celery("canvasproj", broker=settings.broker_url, set_as_current=False)
    options: dict[str, Any] = {}
    if settings.broker_prefix:
        options["global_keyprefix"] = settings.broker_prefix
    app.conf.update(task_default_queue=QUEUE, broker_transport_options=options,
                    task_serializer="json", accept_content=["json"],
                    worker_hijack_root_logger=False, broker_connection_retry_on_startup=True,
                    worker_prefetch_multiplier=1)  # no result_backend: chords need none here
    crisper = Crisper("canvasproj", settings=settings, celery=app)

    @crisper.job(name="cv.add", max_retries=0)
    def add(x: int, y: int) -> int:
        return x + y

    @crisper.job(name="cv.mul", max_retries=0)
    def mul(x: int, y: int) -> int:
        return x * y

    @crisper.job(name="cv.tsum", max_retries=0)
    def tsum(numbers: list[int]) -> int:
        return sum(numbers)

    @crisper.job(name="cv.echo", max_retries=0)
    def echo(value: Any = None, tag: str = "") -> dict[str, Any]:
        """What it was given: shows what a node receives."""
        return {"value": value, "tag": tag}

    @crisper.job(name="cv.boom", max_retries=0)
    def boom(x: int) -> int:
        raise ValueError(f"boom on {x}")

    @crisper.job(name="cv.double", retry=Retry(attempts=1))
    def double(ctx: JobContext, n: int) -> int:
        """A Crisper type (ctx first) in the same canvas."""
        return 2 * n

    return app, crisper


app, crisper = build(Settings())
