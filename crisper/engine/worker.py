"""Running a Celery worker for a Crisper app, and keeping its row in the worker registry."""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from celery import signals

from crisper.engine import waker
from crisper.engine.leases import interrupted_lease
from crisper.errors import ConfigurationError, CrisperError
from crisper.store import attempts as attempt_sql
from crisper.store import utcnow
from crisper.store import workers as worker_sql

if TYPE_CHECKING:
    from celery import Celery

    from crisper.settings import Settings
    from crisper.store import Store

log = logging.getLogger(__name__)

MARKING_WAIT_SECONDS = 10.0  # at the end of a stop, for the marking of interrupted jobs


class WorkerPresence:
    """The worker's main process announces itself and heartbeats until it shuts down."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.name = ""
        self.exitcode = 0  # Celery's worker's, as it stopped (non-zero: stopped by an error)
        self._stop = threading.Event()
        self._marking: threading.Thread | None = None

    def connect(self) -> None:
        signals.worker_ready.connect(self._ready, weak=False, dispatch_uid="crisper-presence")
        signals.worker_shutdown.connect(self._shutdown, weak=False,
                                        dispatch_uid="crisper-presence-stop")
        signals.worker_shutting_down.connect(self._shutting_down, weak=False,
                                             dispatch_uid="crisper-presence-announced")
        # Jobs that submit jobs: their wake-ups go out before the pool child ends.
        signals.worker_process_shutdown.connect(_flush_wakes, weak=False,
                                                dispatch_uid="crisper-flush-wakes")

    def _ready(self, sender: Any = None, **_: Any) -> None:
        self.name = getattr(sender, "hostname", None) or f"celery@{socket.gethostname()}"
        queues = sorted(q.name for q in getattr(sender.task_consumer, "queues", []))
        pool = getattr(sender, "pool", None)
        concurrency = int(getattr(pool, "limit", None) or getattr(sender, "concurrency", 1) or 1)
        try:
            with self.store.transaction() as session:
                worker_sql.register(session, self.name, socket.gethostname(), os.getpid(),
                                    queues, concurrency, utcnow())
        except CrisperError as exc:
            log.warning("could not register worker: %s", exc)
        threading.Thread(target=self._beat, name="crisper-presence", daemon=True).start()

    def _beat(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_seconds):
            try:
                with self.store.transaction() as session:
                    worker_sql.heartbeat(session, self.name, utcnow())
            except CrisperError as exc:
                log.warning("worker heartbeat failed: %s", exc)

    def _shutting_down(self, **_: Any) -> None:
        """An announced shutdown (SIGTERM, SIGQUIT, a deploy): mark this worker's running jobs
        interrupted. Their leases are then renewed only briefly, so if the drain runs out of
        time and the worker is killed, the lifeline rescues them within seconds, not a whole
        lease, and the loss does not count towards the poison-pill cap.

        This runs inside Celery's signal handler, which interrupts the main thread wherever it
        is, possibly inside its own write transaction: the marking goes to a thread, so the
        handler never waits on a lock its own thread holds. (With SQLite it did: the stop hung
        for the whole busy timeout, 30 s, and the database was locked for everyone meanwhile.)
        """
        if self.name and self._marking is None:
            self._marking = threading.Thread(target=self._mark_interrupted, daemon=True,
                                             name="crisper-shutdown")
            self._marking.start()

    def _mark_interrupted(self) -> None:
        try:
            s, now = self.settings, utcnow()
            expires = now + timedelta(seconds=interrupted_lease(s.lease_seconds,
                                                                s.heartbeat_seconds))
            with self.store.transaction() as session:
                marked = attempt_sql.mark_interrupted(session, f"{self.name}:", now, expires)
            if marked:
                log.warning("shutting down: %d running job(s) marked interrupted", marked)
        except CrisperError as exc:
            log.warning("could not mark running jobs interrupted: %s", exc)

    def _shutdown(self, sender: Any = None, **_: Any) -> None:
        self.exitcode = int(getattr(sender, "exitcode", None) or 0)
        self._stop.set()
        if self._marking is not None:
            self._marking.join(MARKING_WAIT_SECONDS)
        try:
            with self.store.transaction() as session:
                worker_sql.stopped(session, self.name, utcnow())
        except CrisperError:
            pass


def _flush_wakes(**_: Any) -> None:
    waker.flush_all()


FORCIBLE_POOLS = ("prefork",)


def run_worker(celery: Celery, store: Store, settings: Settings, queues: list[str],
               presence: WorkerPresence | None, celery_args: list[str]) -> None:
    """Start Celery's worker with Crisper's tasks; unless told, consume every declared queue
    (`queues`). `presence`: an adopted Celery app's own (None: one is made here).

    Exits with Celery's worker exit code when it is not 0 (a worker stopped by an error), so
    that supervisors restart it.
    """
    args = list(celery_args)
    check_pool(pool_of(args) or str(celery.conf.worker_pool or "prefork"))
    if not any(a in ("-Q", "--queues") or a.startswith("--queues=") for a in args):
        args += ["-Q", ",".join(queues)]
    if not any(a.startswith(("-l", "--loglevel")) for a in args):
        args += ["--loglevel", "INFO"]
    if presence is None:
        presence = WorkerPresence(store, settings)
        presence.connect()
    store.dispose()
    celery.worker_main(["worker", *args])
    if presence.exitcode:  # Celery's own command line drops it when run from Python
        raise SystemExit(presence.exitcode)


def pool_of(args: list[str]) -> str | None:
    """The pool named on a Celery worker command line (-P x, -Px, --pool x, --pool=x)."""
    for i, arg in enumerate(args):
        if arg in ("-P", "--pool"):
            return args[i + 1] if i + 1 < len(args) else None
        if arg.startswith("--pool="):
            return arg.split("=", 1)[1]
        if arg.startswith("-P") and len(arg) > 2:
            return arg[2:]
    return None


def check_pool(pool: str) -> None:
    """Crisper guarantees forced cancellation and hard time limits: only prefork can keep that
    promise (each job runs in a child process that can be killed alone)."""
    name = pool.rsplit(":", 1)[-1].lower()
    if name not in FORCIBLE_POOLS:
        raise ConfigurationError(
            f"pool {pool!r} cannot stop a running job by force (a forced cancel or a hard time "
            "limit would only be recorded, while the job's code ran on): use --pool prefork "
            "(the default)"
        )
