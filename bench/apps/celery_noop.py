"""Plain Celery's minimal no-op task, configured like Crisper's tasks (the fair baseline).

acks_late with reject-on-worker-lost, ignore_result, JSON only, prefetch 1: what Crisper's
own wake-up tasks use. Run by `celery -A bench.apps.celery_noop worker`.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from bench.apps import probes

TASK = "bench.noop"


def make(broker: str, prefix: str = "", queue: str = "bench") -> Celery:
    app = Celery("bench_celery", broker=broker, set_as_current=False)
    transport: dict[str, Any] = {"socket_connect_timeout": 3}
    if prefix and broker.startswith(("redis", "rediss")):
        transport["global_keyprefix"] = prefix
    app.conf.update(
        task_default_queue=queue, task_create_missing_queues=True,
        task_serializer="json", accept_content=["json"], result_serializer="json",
        result_backend=None, task_ignore_result=True, worker_prefetch_multiplier=1,
        task_acks_late=True, task_reject_on_worker_lost=True,
        worker_hijack_root_logger=False, worker_send_task_events=False,
        broker_connection_retry_on_startup=True, broker_transport_options=transport,
    )

    @app.task(name=TASK, ignore_result=True, acks_late=True, reject_on_worker_lost=True,
              serializer="json")
    def noop() -> None:
        probes.mark_started()

    return app


app = make(os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/3"),
           os.environ.get("BENCH_BROKER_PREFIX", ""), os.environ.get("BENCH_QUEUE", "bench"))
probes.install()
