"""Observe mode: plain Celery tasks of a wrapped app recorded in the store via Celery's signals.

`Crisper("proj", celery=app)` connects these handlers (unless CRISPER_OBSERVE=false). Each
handler turns one signal into an `Observation` and hands it to this process's buffer; the
flusher thread writes (crisper.engine.observe_flush). Tasks that are Crisper job types, and
Celery's own `celery.*` tasks, are not observed.

Where each step is seen: published (after_task_publish, in the caller), received and revoked
(task_received, task_revoked: the worker's main process), started, retried, succeeded, failed
(task_prerun, task_retry, task_success, task_failure, task_postrun: where the task runs).
The worker's main process also heartbeats the worker registry and marks observed runs whose
worker stopped heartbeating as lost.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from celery import signals

from crisper.engine.observation import Observation, error_of
from crisper.engine.observe_flush import Flusher, ObserveBuffer
from crisper.errors import InvalidTransition
from crisper.states import JobState
from crisper.store import observed as observed_sql

if TYPE_CHECKING:
    from celery import Celery

    from crisper.engine.dispatcher import Dispatcher
    from crisper.records import JobRecord
    from crisper.registry import Registry
    from crisper.settings import Settings
    from crisper.store import Store

log = logging.getLogger("crisper.observe")
S = JobState
LOST_CHECK_SECONDS = 5.0
_OTHER_OUTCOMES = {"IGNORED": S.SUCCEEDED, "REJECTED": S.FAILED}


class Observer:
    """The signal handlers of one wrapped Celery app, and this process's buffer and flusher."""

    def __init__(self, registry: Registry, settings: Settings, app: Celery) -> None:
        """`registry`: Crisper's job types, which are not observed (they are Crisper's own)."""
        self.registry = registry
        self.app = app
        self.settings = settings
        self._pid = -1
        self._lock = threading.Lock()
        self.buffer = ObserveBuffer(self.settings.observe_buffer)
        self._flusher: Flusher | None = None
        self._store: Store | None = None
        self._worker: dict[str, Any] | None = None  # set in a worker's main process
        # In a worker main process: requests received and not yet written (see _hold).
        self._waiting: dict[str, tuple[datetime, Any]] = {}
        # Where tasks run: started and not yet ended, as (start, args, kwargs, task, request,
        # already recorded as running). See _started.
        self._running: dict[str, list[Any]] = {}
        self._last_lost_check = 0.0
        self._last_heartbeat = 0.0
        self._app_tasks: set[str] = set()

    # -- wiring -----------------------------------------------------------------------------

    def connect(self) -> None:
        # A lock held by this process's flusher at a fork would stay held in the child.
        os.register_at_fork(after_in_child=self._fresh_locks)
        for signal, handler in self._handlers():
            signal.connect(handler, weak=False, dispatch_uid=f"crisper-observe-{id(self)}")

    def disconnect(self) -> None:
        """Stop observing (and flush what this process holds)."""
        for signal, _ in self._handlers():
            signal.disconnect(dispatch_uid=f"crisper-observe-{id(self)}")
        self._shutdown()

    def _handlers(self) -> tuple[tuple[Any, Any], ...]:
        return (
            (signals.after_task_publish, self._published),
            (signals.task_received, self._received),
            (signals.task_prerun, self._started),
            (signals.task_retry, self._retried),
            (signals.task_success, self._succeeded),
            (signals.task_failure, self._failed),
            (signals.task_revoked, self._revoked),
            (signals.task_postrun, self._ended),
            (signals.worker_ready, self._worker_ready),
            (signals.worker_shutdown, self._shutdown),
            (signals.worker_process_shutdown, self._shutdown),
        )

    def _fresh_locks(self) -> None:
        self._lock = threading.Lock()
        self.buffer = ObserveBuffer(self.settings.observe_buffer)

    def observes(self, name: str | None) -> bool:
        """A plain task of this app: not a Crisper job type, not Celery's own. (Names the app
        has are remembered: a signal handler should cost next to nothing.)"""
        if not name or name in self.registry or name.startswith("celery."):
            return False
        if name in self._app_tasks:
            return True
        if name in self.app.tasks:
            self._app_tasks.add(name)
            return True
        return False

    def _task_of(self, task: Any) -> bool:
        return getattr(task, "app", None) is self.app and self.observes(getattr(task, "name", ""))

    def record(self, obs: Observation) -> None:
        """Hand one observation to this process's buffer (starting its flusher if needed)."""
        if self._pid != os.getpid():
            self._start_process()
        self.buffer.add(obs)

    # -- the signals ------------------------------------------------------------------------

    def _published(self, sender: Any = None, headers: Any = None, body: Any = None,
                   routing_key: str | None = None, **_: Any) -> None:
        headers = headers or {}
        name = headers.get("task") or (body.get("task") if isinstance(body, dict) else sender)
        task_id = headers.get("id") or (body.get("id") if isinstance(body, dict) else None)
        if not task_id or not self.observes(name):
            return
        args, kwargs = _payload(body)
        now = _now()
        eta = _parse_time(headers.get("eta"))
        self.record(Observation(str(task_id), str(name), S.QUEUED, now,
                                attempt=int(headers.get("retries") or 0) + 1,
                                queue=routing_key or None, raw=(args, kwargs), created_at=now,
                                run_at=eta, max_attempts=self._max_attempts(str(name))))

    def _received(self, request: Any = None, **_: Any) -> None:
        task: Any = getattr(request, "task", None)
        if request is not None and self._task_of(task):
            self._hold(request)

    def _seen_waiting(self, request: Any, at: datetime) -> Observation:
        ctx = request.request_dict
        return Observation(
            request.id, request.task.name, S.QUEUED, at,
            attempt=int(ctx.get("retries") or 0) + 1, queue=_queue(request.delivery_info),
            worker=request.hostname, raw=(request.args, request.kwargs),
            run_at=_parse_time(request.eta), max_attempts=_max_attempts_of(request.task))

    def _started(self, sender: Any = None, task_id: str | None = None, args: Any = None,
                 kwargs: Any = None, **_: Any) -> None:
        """Only noted: the task's outcome record carries its start too (one record per task,
        no merge). A task still running at the next flush is recorded as running then."""
        if not task_id or not self._task_of(sender):
            return
        if self._pid != os.getpid():
            self._start_process()
        self._running[task_id] = [_now(), args, kwargs, sender, sender.request, False]

    def _running_record(self, task_id: str, state: JobState, entry: list[Any]) -> Observation:
        at, args, kwargs, task, req, _ = entry
        return Observation(task_id, task.name, state, at, attempt=_attempt(req),
                           queue=_queue(req.delivery_info), worker=req.hostname,
                           raw=(args, kwargs), started_at=at, max_attempts=_max_attempts_of(task))

    def _release_running(self) -> None:
        """Flusher step: tasks still running are recorded as running, once each."""
        for task_id, entry in list(self._running.items()):
            if not entry[5]:
                entry[5] = True
                self.buffer.add(self._running_record(task_id, S.RUNNING, entry))

    def _retried(self, sender: Any = None, request: Any = None, reason: Any = None,
                 einfo: Any = None, **_: Any) -> None:
        if request is None or not self._task_of(sender):
            return
        exc = reason if isinstance(reason, BaseException) else None
        cap = self.settings.observe_payload_chars
        error = error_of(exc, getattr(einfo, "traceback", None), cap)
        if exc is None:
            error["message"] = str(reason)[:cap]
        self._outcome(sender, request, S.RETRYING, error=error)

    def _succeeded(self, sender: Any = None, result: Any = None, **_: Any) -> None:
        if self._task_of(sender):
            self._outcome(sender, sender.request, S.SUCCEEDED, result=result)

    def _failed(self, sender: Any = None, exception: BaseException | None = None,
                einfo: Any = None, **_: Any) -> None:
        if self._task_of(sender):
            error = error_of(exception, getattr(einfo, "traceback", None),
                             self.settings.observe_payload_chars)
            self._outcome(sender, sender.request, S.FAILED, error=error)

    def _revoked(self, sender: Any = None, request: Any = None, terminated: bool = False,
                 signum: Any = None, expired: bool = False, **_: Any) -> None:
        if request is None or not self._task_of(sender):
            return
        how = ("expired" if expired else f"terminated by signal {signum}" if terminated
               else "revoked before it started")
        self._outcome(sender, request, S.CANCELLED, error={
            "type": "Revoked", "message": f"Celery revoked the task ({how})"})

    def _ended(self, sender: Any = None, task_id: str | None = None, state: str | None = None,
               **_: Any) -> None:
        """Outcomes no other signal reports (Ignore, Reject) still end the run; a run that
        ended with no outcome signal at all is recorded as started, as it was seen."""
        if not task_id or not self._running:
            return
        target = _OTHER_OUTCOMES.get(state or "")
        if target is not None and self._task_of(sender):
            self._outcome(sender, sender.request, target,
                          error=None if target is S.SUCCEEDED else {
                              "type": str(state).title(), "message": f"Celery state {state}"})
        entry = self._running.pop(task_id, None)
        if entry is not None and not entry[5]:
            self.record(self._running_record(task_id, S.RUNNING, entry))

    def _outcome(self, task: Any, request: Any, state: JobState, result: Any = None,
                 error: dict[str, Any] | None = None) -> None:
        now = _now()
        entry = self._running.pop(request.id, None) if self._running else None
        if entry is None:
            self.record(Observation(
                request.id, task.name, state, now, attempt=_attempt(request),
                worker=getattr(request, "hostname", None), result=result, error=error,
                finished_at=now if state.is_terminal else None,
                cancelled_at=now if state is S.CANCELLED else None))
            return
        obs = self._running_record(request.id, state, entry)
        obs.at, obs.result, obs.error = now, result, error
        obs.finished_at = now if state.is_terminal else None
        obs.cancelled_at = now if state is S.CANCELLED else None
        self.record(obs)

    # -- received, held back ----------------------------------------------------------------

    def _hold(self, request: Any) -> None:
        """A received task is written only if it still waits in this worker at the next flush
        (an eta, a full pool): one that already ran is told by the process that ran it, so a
        fast task costs no row write (and no record) here."""
        if self._pid != os.getpid():
            self._start_process()
        with self._lock:
            if len(self._waiting) < self.settings.observe_buffer:
                self._waiting[request.id] = (_now(), request)
            else:
                self.buffer.counters.dropped += 1

    def _release_received(self) -> None:
        from celery.worker import state

        cutoff = _now() - timedelta(seconds=self.settings.observe_flush_seconds)
        with self._lock:
            due = [(at, r) for at, r in self._waiting.values() if at <= cutoff]
            for _, request in due:
                del self._waiting[request.id]
        active = {r.id for r in list(state.active_requests)}
        for at, request in due:
            if request.id in state.requests and request.id not in active:
                self.buffer.add(self._seen_waiting(request, at))

    # -- processes --------------------------------------------------------------------------

    def _worker_ready(self, sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not self.app:
            return
        pool = getattr(sender, "pool", None)
        self._worker = {
            "name": getattr(sender, "hostname", None) or f"celery@{socket.gethostname()}",
            "host": socket.gethostname(), "pid": os.getpid(),
            "queues": sorted(q.name for q in getattr(sender.task_consumer, "queues", [])),
            "concurrency": int(getattr(pool, "limit", None) or sender.concurrency or 1),
        }
        if self._pid != os.getpid():
            self._start_process()
        assert self._flusher is not None
        self._flusher.extra.append(self._worker_duties)

    def _shutdown(self, **_: Any) -> None:
        if self._flusher is not None and self._pid == os.getpid():
            self._flusher.stop(flush=True)
        if self._store is not None and self._pid == os.getpid():
            self._store.close()
            self._store = None

    def _start_process(self) -> None:
        """First observation in this process (or the first since a fork): a fresh flusher."""
        with self._lock:
            if self._pid == os.getpid():
                return
            if self._pid != -1:  # forked: the parent's buffer, thread and pool are not ours
                self.buffer = ObserveBuffer(self.settings.observe_buffer)
                self._worker = None
                self._waiting = {}
                self._running = {}
            self._store = None
            self._flusher = Flusher(self.buffer, self._write, self.settings.observe_flush_seconds,
                                    self.settings.observe_payload_chars,
                                    before=[self._release_received, self._release_running])
            self._pid = os.getpid()
            self._flusher.start()
            atexit.register(self._shutdown)

    def _own_store(self) -> Store:
        if self._store is None:
            from crisper.store import Store

            self._store = Store(self.settings.resolved_database_url())
        return self._store

    def _write(self, rows: list[dict[str, Any]]) -> None:
        store = self._own_store()
        if store.dialect == "postgresql":  # one statement: no BEGIN, COMMIT or pre-ping
            with store.autocommit() as conn:
                observed_sql.upsert_pg(conn, rows)
            return
        with store.transaction() as session:
            observed_sql.upsert(session, rows)

    def _worker_duties(self) -> None:
        """In a worker's main process: heartbeat the registry; now and then, mark lost runs.
        (A heartbeat every quarter of the lost-after time, at most every 5 s, is plenty: a
        transaction per flush cost the main process more than its tasks' records.)"""
        w, now, clock = self._worker, _now(), time.monotonic()
        if w is None:
            return
        lost_after = self.settings.worker_lost_after_seconds
        if clock - self._last_heartbeat >= min(LOST_CHECK_SECONDS, lost_after / 4):
            with self._own_store().transaction() as session:
                observed_sql.heartbeat_worker(session, w["name"], w["host"], w["pid"],
                                              w["queues"], w["concurrency"], now)
            self._last_heartbeat = clock
        if clock - self._last_lost_check >= LOST_CHECK_SECONDS:
            self._last_lost_check = clock
            mark_lost(self._own_store(), lost_after)

    def _max_attempts(self, name: str) -> int | None:
        return _max_attempts_of(self.app.tasks.get(name))


def mark_lost(store: Store, lost_after: float) -> int:
    """Observed runs on workers silent for `lost_after` seconds end failed (WorkerLost)."""
    now = _now()
    with store.transaction() as session:
        lost = observed_sql.mark_lost(session, now, now - timedelta(seconds=lost_after))
    if lost:
        log.warning("observe: %d running task(s) marked lost (their worker stopped)", len(lost))
    return len(lost)


def revoke(store: Store, dispatcher: Dispatcher, record: JobRecord) -> None:
    """Cancel of an observed task: Celery's revoke(terminate=True), noted on the row.

    Crisper does not control the task: Celery's workers decide (a task already finished is
    not affected; a queued one is discarded when a worker that got the revoke receives it).
    """
    if record.state.is_terminal:
        raise InvalidTransition(record.id, record.state.value, "revoked",
                                [S.QUEUED.value, S.RUNNING.value, S.RETRYING.value])
    dispatcher.revoke(record.task_id, "SIGTERM")
    with store.transaction() as session:
        observed_sql.request_revoke(session, record.id, _now())


def _payload(body: Any) -> tuple[Any, Any]:
    if isinstance(body, (list, tuple)) and len(body) >= 2:  # protocol 2: (args, kwargs, embed)
        return body[0], body[1]
    if isinstance(body, dict):  # protocol 1
        return body.get("args"), body.get("kwargs")
    return None, None


def _queue(delivery_info: Any) -> str | None:
    info = delivery_info or {}
    return info.get("routing_key") or info.get("queue") or None


def _attempt(request: Any) -> int:
    return int(getattr(request, "retries", 0) or 0) + 1


def _max_attempts_of(task: Any) -> int | None:
    retries = getattr(task, "max_retries", None)
    return retries + 1 if isinstance(retries, int) else None


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            return _parse_time(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


def _now() -> datetime:
    return datetime.now(UTC)
