"""Celery's result surface over Crisper's store: a result backend and a revoke for moved jobs.

The app's backend becomes a `StoreBackend`: ids of Crisper jobs are answered from the store
(state in Celery's vocabulary, result, error), every other id and every write goes to the
app's own backend, unchanged. So `AsyncResult(id, app=app)`, `.get()` and callers not yet
redeployed read the durable record. `app.control.revoke` on a job id is Crisper's cancel.
"""

from __future__ import annotations

import builtins
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from celery import states as celery_states
from celery.exceptions import TimeoutError as CeleryTimeout

from crisper.errors import Cancelled, CrisperError, InvalidTransition, JobNotFound
from crisper.ids import parse_id
from crisper.records import JobRecord
from crisper.states import JobState
from crisper.store import jobs as job_sql

if TYPE_CHECKING:
    from celery import Celery

    from crisper.adoption.tasks import AdoptedJobType
    from crisper.engine.context import JobContext
    from crisper.store import Store

Find = Callable[[object], JobRecord | None]  # the job a Celery task id names, if any
EXPIRES_KEY = "celery.expires"
CELERY_STATE = {
    JobState.HELD: celery_states.PENDING,
    JobState.SCHEDULED: celery_states.PENDING,
    JobState.QUEUED: celery_states.PENDING,
    JobState.RUNNING: celery_states.STARTED,
    JobState.RETRYING: celery_states.RETRY,
    JobState.SUCCEEDED: celery_states.SUCCESS,
    JobState.FAILED: celery_states.FAILURE,
    JobState.CANCELLED: celery_states.REVOKED,
    JobState.WAITING: celery_states.PENDING,  # a workflow node waiting for its parents
    JobState.SKIPPED: celery_states.REVOKED,  # a node its failed parent's policy skipped
}


def find_job(store: Store, task_id: object) -> JobRecord | None:
    """The job a Celery task id names: the id itself, or the id a caller chose (non-UUID)."""
    from crisper.adoption.tasks import IDEMPOTENCY_PREFIX
    from crisper.service import DEFAULT_TENANT

    parsed = parse_id(task_id)
    with store.read() as session:
        if parsed is not None:
            found = job_sql.get(session, parsed)
            if found is not None:
                return found
        return job_sql.find_idempotent(session, DEFAULT_TENANT, f"{IDEMPOTENCY_PREFIX}{task_id}")


def task_meta(job: JobRecord, task_id: str) -> dict[str, Any]:
    """Celery's result meta for a job: status, result (an exception's parts when it failed)."""
    status = CELERY_STATE[job.state]
    result: Any = job.result
    traceback = None
    if job.state is JobState.FAILED or (job.state is JobState.RETRYING and job.error):
        error = job.error or {}
        kind = str(error.get("type") or "Exception")
        result = {"exc_type": kind, "exc_message": [error.get("message", "")],
                  "exc_module": "builtins" if isinstance(getattr(builtins, kind, None), type)
                  else None}
        traceback = error.get("traceback")
    elif job.state in (JobState.CANCELLED, JobState.SKIPPED):
        result = {"exc_type": "TaskRevokedError", "exc_module": "celery.exceptions",
                  "exc_message": [f"job {job.id} was {job.state.value}"]}
    return {"task_id": task_id, "status": status, "result": result, "traceback": traceback,
            "children": [], "date_done": job.finished_at, "name": job.type,
            "retries": max(job.attempt - 1, 0), "queue": job.queue}


class StoreBackend:
    """The app's result backend, answering for Crisper's jobs from the store.

    Other calls go to the app's own backend, built once per thread as Celery builds it.
    """

    thread_safe = True

    def __init__(self, find: Find, app: Celery) -> None:
        self.find = find
        self.app = app
        self._local = threading.local()

    @property
    def inner(self) -> Any:
        backend = getattr(self._local, "backend", None)
        if backend is None:
            backend = self._local.backend = self.app._get_backend()
        return backend

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _job(self, task_id: object) -> JobRecord | None:
        try:
            return self.find(task_id)
        except CrisperError:  # the store is down: the app's backend may still know the id
            return None

    def get_task_meta(self, task_id: str, cache: bool = True) -> dict[str, Any]:
        job = self._job(task_id)
        return task_meta(job, task_id) if job is not None else self.inner.get_task_meta(
            task_id, cache=cache)

    def get_state(self, task_id: str) -> str:
        return str(self.get_task_meta(task_id)["status"])

    get_status = get_state

    def get_result(self, task_id: str) -> Any:
        return self.get_task_meta(task_id).get("result")

    def get_traceback(self, task_id: str) -> Any:
        return self.get_task_meta(task_id).get("traceback")

    def add_pending_result(self, result: Any, weak: bool = False) -> Any:
        return result if self._job(result.id) else self.inner.add_pending_result(result, weak)

    def remove_pending_result(self, result: Any) -> Any:
        """Passed on without a read: Celery calls this as every AsyncResult is collected (one
        per publish of a plain task), and a job's id was never added to the app's backend."""
        return self.inner.remove_pending_result(result)

    def forget(self, task_id: str) -> None:
        """A job's record is kept (its retention decides); other ids go to the app's backend."""
        if self._job(task_id) is None:
            self.inner.forget(task_id)

    def wait_for_pending(self, result: Any, timeout: float | None = None,
                         interval: float = 0.5, no_ack: bool = True, on_message: Any = None,
                         on_interval: Any = None, callback: Any = None,
                         propagate: bool = True) -> Any:
        if self._job(result.id) is None:
            return self.inner.wait_for_pending(
                result, timeout=timeout, interval=interval, no_ack=no_ack,
                on_message=on_message, on_interval=on_interval, callback=callback,
                propagate=propagate)
        meta = self.wait_for(result.id, timeout=timeout, interval=interval,
                             on_interval=on_interval)
        if propagate and on_interval and meta["status"] in celery_states.PROPAGATE_STATES:
            on_interval()  # Celery's rule: a failed parent's own error is the one raised
        result._maybe_set_cache(meta)
        return result.maybe_throw(propagate=propagate, callback=callback)

    def wait_for(self, task_id: str, timeout: float | None = None, interval: float = 0.5,
                 no_ack: bool = True, on_interval: Any = None) -> dict[str, Any]:
        """Poll the store until the job has ended (Celery's TimeoutError past `timeout`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            meta = self.get_task_meta(task_id)
            if meta["status"] in celery_states.READY_STATES:
                return meta
            if on_interval:
                on_interval()
            if deadline is not None and time.monotonic() >= deadline:
                raise CeleryTimeout("The operation timed out.")
            nap = interval if deadline is None else min(interval, deadline - time.monotonic())
            time.sleep(max(nap, 0.01))


def install(app: Celery, find: Find, cancel: Callable[[uuid.UUID], object]) -> None:
    """Put the store in front of the app's backend, and route revokes of jobs to cancel."""
    app._backend = StoreBackend(find, app)
    control = app.control
    original = control.revoke

    def revoke(task_id: Any, destination: Any = None, terminate: bool = False,
               signal: Any = None, **kwargs: Any) -> Any:
        ids = task_id if isinstance(task_id, list | tuple) else [task_id]
        others = [i for i in ids if not _cancel(find, cancel, i)]
        if others:
            return original(others, destination=destination, terminate=terminate,
                            signal=signal or "SIGTERM", **kwargs)
        return None

    control.revoke = revoke


def _cancel(find: Find, cancel: Callable[[uuid.UUID], object], task_id: object) -> bool:
    """Cancel the job `task_id` names (a running one is stopped); False if it names none."""
    try:
        job = find(task_id)
    except CrisperError:
        return False
    if job is None:
        return False
    with suppress(InvalidTransition, JobNotFound):  # ended already: nothing to stop
        cancel(job.id)
    return True


def check_expiry(job_type: AdoptedJobType, ctx: JobContext) -> None:
    """A job given `expires=` that starts too late is cancelled (Celery's REVOKED)."""
    job = job_type.port.find(ctx.job_id)
    expires = ((job.metadata if job is not None else None) or {}).get(EXPIRES_KEY)
    if expires and datetime.fromisoformat(expires) < datetime.now(UTC):
        ctx.cancel_requested = True
        raise Cancelled(f"job {ctx.job_id} expired at {expires}")
