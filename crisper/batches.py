"""Batches: many jobs submitted as one (one call, one transaction), counted as they end, with
callbacks on success, on completion and on death, each fired once per batch.

The counters move in the transaction that ends each job (store/deliveries.job_moved), and a
callback fires when a conditional UPDATE flips its once-only flag: however many workers and
schedulers end the batch's jobs at the same time, one transaction wins each flag. A callback
is a webhook (a signed POST of the batch's summary), a job (submitted from the outbox under
an idempotency key), or both.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crisper.errors import BatchNotFound, InvalidRequest
from crisper.ids import new_id, parse_id
from crisper.names import text_problem
from crisper.outbound import checked_callback_url
from crisper.records import JobRecord
from crisper.service import BulkResult, JobService, SubmitRequest
from crisper.states import JobState, action_sources
from crisper.store import batches as batch_sql
from crisper.store import jobs as job_sql
from crisper.store import utcnow
from crisper.store.batches import KINDS, BatchRecord

if TYPE_CHECKING:
    from crisper.store import Store

S = JobState
MAX_BATCH = 10_000


@dataclass(frozen=True)
class Callback:
    """What to do when a batch succeeds, completes or dies: POST to `url`, submit `job`
    ({"type", "params", "queue"?}), or both."""

    url: str | None = None
    job: Mapping[str, Any] | None = None


class BatchService:
    """Submit, read and steer batches; the API, CLI and dashboard call only this."""

    def __init__(self, store: Store, jobs: JobService) -> None:
        self.store = store
        self.job_service = jobs

    def submit(self, requests: Sequence[SubmitRequest], *, tenant: str = "default",
               description: str | None = None,
               callbacks: Mapping[str, Callback] | None = None) -> BatchRecord:
        """Create the batch and all its jobs in one transaction, then wake the workers."""
        if not requests or len(requests) > MAX_BATCH:
            raise InvalidRequest("jobs", f"a batch holds 1 to {MAX_BATCH} jobs")
        problem = None if description is None else text_problem(description, 500)
        if problem is not None:
            raise InvalidRequest("description", problem)
        stored = self._callbacks(callbacks or {})
        at = utcnow()
        batch_id = new_id()
        service = self.job_service
        rows = []
        for i, r in enumerate(requests):
            if r.idempotency_key or r.unique_key:
                raise InvalidRequest(f"jobs.{i}", "jobs of a batch take no idempotency or "
                                     "unique key (the batch is the unit)")
            row = service.prepare_row(SubmitRequest(**{**r.__dict__, "tenant": tenant}), at)
            rows.append({**row, "batch_id": batch_id, "dispatched_at": None})
        with self.store.transaction() as session:
            batch_sql.create(session, {
                "id": batch_id, "tenant": tenant, "description": description,
                "total": len(rows), "callbacks": stored, "created_at": at})
            job_sql.create(session, rows, at)
        with self.store.read() as session:
            records = job_sql.list_jobs(session, job_sql.JobFilter(batch_id=batch_id),
                                        limit=len(rows))
        service.dispatch_committed(records)
        return self.get(batch_id, tenant)

    def _callbacks(self, callbacks: Mapping[str, Callback]) -> dict[str, Any]:
        """Checked as they enter: a known kind, a sane URL, a registered job type with valid
        params (a callback job that cannot be submitted would fail only at the end)."""
        stored: dict[str, Any] = {}
        for kind, cb in callbacks.items():
            if kind not in KINDS:
                raise InvalidRequest("callbacks", f"unknown callback {kind!r}; known: {KINDS}")
            entry: dict[str, Any] = {}
            if cb.url:
                entry["url"] = checked_callback_url(cb.url, f"callbacks.{kind}.url")
            if cb.job:  # checked as a submit would check it (type, params, queue)
                if not isinstance(cb.job.get("params") or {}, dict):
                    raise InvalidRequest(f"callbacks.{kind}.job.params", "must be an object")
                row = self.job_service.prepare_row(SubmitRequest(
                    type=str(cb.job.get("type")), params=dict(cb.job.get("params") or {}),
                    queue=cb.job.get("queue")), utcnow())
                entry["job"] = {"type": row["type"], "params": row["params"],
                                "queue": row["queue"]}
            if entry:
                stored[kind] = entry
        return stored

    def get(self, batch_id: object, tenant: str | None = None) -> BatchRecord:
        parsed = parse_id(batch_id)
        with self.store.read() as session:
            found = None if parsed is None else batch_sql.get(session, parsed, tenant)
        if found is None:
            raise BatchNotFound(batch_id)
        return found

    def list_batches(self, tenant: str | None = None, limit: int = 50) -> list[BatchRecord]:
        with self.store.read() as session:
            return batch_sql.list_batches(session, tenant, limit)

    def jobs(self, batch_id: object, tenant: str | None = None, limit: int = 100,
             before: object = None) -> list[JobRecord]:
        batch = self.get(batch_id, tenant)
        return self.job_service.list_jobs(job_sql.JobFilter(batch_id=batch.id, tenant=tenant),
                                           before, limit)

    def cancel(self, batch_id: object, tenant: str | None = None) -> BulkResult:
        """Cancel every job of the batch still waiting or running."""
        return self._each(batch_id, tenant, self.job_service.cancel,
                          sorted(action_sources("cancelled")))

    def retry(self, batch_id: object, tenant: str | None = None) -> BulkResult:
        """Run the batch's failed and cancelled jobs again (its counters take them back)."""
        return self._each(batch_id, tenant, self.job_service.retry, [S.FAILED, S.CANCELLED])

    def _each(self, batch_id: object, tenant: str | None, action: Any,
              states: list[JobState]) -> BulkResult:
        from crisper.errors import InvalidTransition, JobNotFound

        batch = self.get(batch_id, tenant)
        with self.store.read() as session:
            ids = batch_sql.job_ids(session, batch.id, states)
        changed, errors = 0, {}
        for job_id in ids:
            try:
                action(job_id, tenant)
                changed += 1
            except (InvalidTransition, JobNotFound) as exc:  # it moved on meanwhile
                errors[str(job_id)] = str(exc)
        return BulkResult(matched=len(ids), changed=changed, skipped=len(ids) - changed,
                          errors=errors)


def batch_id_of(value: object) -> uuid.UUID:
    parsed = parse_id(value)
    if parsed is None:
        raise BatchNotFound(value)
    return parsed
