"""Running a Celery worker for a Crisper app, and keeping its row in the worker registry."""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import TYPE_CHECKING, Any

from celery import signals

from crisper.errors import CrisperError
from crisper.store import utcnow
from crisper.store import workers as worker_sql

if TYPE_CHECKING:
    from crisper.app import Crisper

log = logging.getLogger(__name__)


class WorkerPresence:
    """The worker's main process announces itself and heartbeats until it shuts down."""

    def __init__(self, crisper: Crisper) -> None:
        self.crisper = crisper
        self.name = ""
        self._stop = threading.Event()

    def connect(self) -> None:
        signals.worker_ready.connect(self._ready, weak=False, dispatch_uid="crisper-presence")
        signals.worker_shutdown.connect(self._shutdown, weak=False,
                                        dispatch_uid="crisper-presence-stop")

    def _ready(self, sender: Any = None, **_: Any) -> None:
        self.name = getattr(sender, "hostname", None) or f"celery@{socket.gethostname()}"
        queues = sorted(q.name for q in getattr(sender.task_consumer, "queues", []))
        pool = getattr(sender, "pool", None)
        concurrency = int(getattr(pool, "limit", None) or getattr(sender, "concurrency", 1) or 1)
        try:
            with self.crisper.store.transaction() as session:
                worker_sql.register(session, self.name, socket.gethostname(), os.getpid(),
                                    queues, concurrency, utcnow())
        except CrisperError as exc:
            log.warning("could not register worker: %s", exc)
        threading.Thread(target=self._beat, name="crisper-presence", daemon=True).start()

    def _beat(self) -> None:
        while not self._stop.wait(self.crisper.settings.heartbeat_seconds):
            try:
                with self.crisper.store.transaction() as session:
                    worker_sql.heartbeat(session, self.name, utcnow())
            except CrisperError as exc:
                log.warning("worker heartbeat failed: %s", exc)

    def _shutdown(self, **_: Any) -> None:
        self._stop.set()
        try:
            with self.crisper.store.transaction() as session:
                worker_sql.stopped(session, self.name, utcnow())
        except CrisperError:
            pass


def run_worker(crisper: Crisper, celery_args: list[str]) -> None:
    """Start Celery's worker with Crisper's tasks; unless told, consume every declared queue."""
    args = list(celery_args)
    if not any(a in ("-Q", "--queues") or a.startswith("--queues=") for a in args):
        args += ["-Q", ",".join(crisper.declared_queues())]
    if not any(a.startswith(("-l", "--loglevel")) for a in args):
        args += ["--loglevel", "INFO"]
    WorkerPresence(crisper).connect()
    crisper.store.dispose()
    crisper.celery.worker_main(["worker", *args])
