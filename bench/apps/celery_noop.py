"""Plain Celery's minimal no-op task, in one of two configurations (BENCH_CELERY_PROFILE).

"defaults" (issue 11's baseline, Celery as teams run it): Celery's defaults plus JSON only
and ignore_result. "acks-late": also acks_late with reject-on-worker-lost and prefetch 1,
what Crisper's own wake-up tasks use (the baseline of the figures before 2026-11-27).
Run by `celery -A bench.apps.celery_noop worker`.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from bench.apps import probes

TASK = "bench.noop"


PROFILES = ("defaults", "acks-late")


def profile_settings(profile: str) -> dict[str, Any]:
    """The settings that differ from Celery's defaults, per profile (printed by the benches)."""
    settings: dict[str, Any] = {"task_serializer": "json", "accept_content": ["json"],
                                "result_serializer": "json", "task_ignore_result": True,
                                "result_backend": None}
    if profile == "acks-late":
        settings.update(worker_prefetch_multiplier=1, task_acks_late=True,
                        task_reject_on_worker_lost=True)
    elif profile != "defaults":
        raise ValueError(f"unknown Celery profile {profile!r}; known: {PROFILES}")
    return settings


def make(broker: str, prefix: str = "", queue: str = "bench",
         profile: str = "acks-late") -> Celery:
    app = Celery("bench_celery", broker=broker, set_as_current=False)
    transport: dict[str, Any] = {"socket_connect_timeout": 3}
    if prefix and broker.startswith(("redis", "rediss")):
        transport["global_keyprefix"] = prefix
    app.conf.update(
        task_default_queue=queue, task_create_missing_queues=True,
        worker_hijack_root_logger=False, worker_send_task_events=False,
        broker_connection_retry_on_startup=True, broker_transport_options=transport,
        **profile_settings(profile),
    )

    @app.task(name=TASK, shared=False)
    def noop() -> None:
        probes.mark_started()

    return app


app = make(os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/3"),
           os.environ.get("BENCH_BROKER_PREFIX", ""), os.environ.get("BENCH_QUEUE", "bench"),
           os.environ.get("BENCH_CELERY_PROFILE", "acks-late"))
probes.install()
