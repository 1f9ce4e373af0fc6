"""A plain Celery app wrapped by Crisper (observe mode), built for given settings.

Its tasks are ordinary Celery tasks; none is a Crisper job type. Settings come from the
CRISPER_* environment (database, broker, prefix), as in a team's own deployment.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from celery import Celery

from crisper import Crisper, Settings

QUEUE = "obs"


def build(settings: Settings) -> tuple[Celery, Crisper]:
    """The Celery app and its Crisper wrapper, on the broker and database `settings` name."""
    app = Celery("observed", broker=settings.broker_url, set_as_current=False)
    options: dict[str, Any] = {}
    if settings.broker_prefix:
        options["global_keyprefix"] = settings.broker_prefix
    app.conf.update(task_default_queue=QUEUE, broker_transport_options=options,
                    task_serializer="json", accept_content=["json"], task_ignore_result=True,
                    worker_hijack_root_logger=False, broker_connection_retry_on_startup=True,
                    worker_prefetch_multiplier=1)

    @app.task(name="obs.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="obs.boom", shared=False)
    def boom(message: str) -> None:
        raise ValueError(message)

    @app.task(name="obs.flaky", shared=False, bind=True, max_retries=3)
    def flaky(self: Any, token: str) -> str:
        if self.request.retries < 1:
            raise self.retry(countdown=0.2, exc=RuntimeError(f"first try of {token} fails"))
        return f"{token} after {self.request.retries} retry"

    @app.task(name="obs.sleepy", shared=False)
    def sleepy(seconds: float, mark: str = "") -> str:
        if mark:
            Path(mark).write_text(str(os.getpid()))
        time.sleep(seconds)
        return "slept"

    @app.task(name="obs.stamp", shared=False)
    def stamp(path: str) -> None:
        Path(path).write_text(repr(time.time()))

    @app.task(name="obs.noop", shared=False)
    def noop() -> None:
        return None

    return app, Crisper("observed", settings=settings, celery=app)

