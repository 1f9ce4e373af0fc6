"""The service layer: every job operation the Python API, CLI and HTTP API perform, in one place."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crisper.durations import Duration, seconds
from crisper.errors import (
    CrisperError,
    DuplicateJob,
    InvalidRequest,
    InvalidTransition,
    JobNotFound,
    NotControlled,
    UnknownQueue,
    WorkflowBusy,
)
from crisper.flow import limits
from crisper.ids import new_id, parse_id
from crisper.metadata import metadata_problem
from crisper.names import MAX_KEY, tag_problem, text_problem, unknown_queue_problem
from crisper.outbound import checked_callback_url
from crisper.priorities import priority_problem
from crisper.records import EventRecord, JobRecord, LogRecord
from crisper.states import JobState, initial_state
from crisper.store import flow as flow_sql
from crisper.store import jobs as job_sql
from crisper.store import sweeps as sweep_sql
from crisper.store import utcnow
from crisper.time_limits import own_limits

if TYPE_CHECKING:
    from crisper.engine.dispatch import Refusal
    from crisper.engine.dispatcher import Dispatcher
    from crisper.live import LivePublisher
    from crisper.registry import Registry
    from crisper.settings import Settings
    from crisper.store import Store

log = logging.getLogger(__name__)
S = JobState
DEFAULT_TENANT = "default"
_PENDING = "crisper_pending_dispatch"
_LISTENING = "crisper_listening"


@dataclass
class SubmitRequest:
    """One job to create: its type, params and submit options."""

    type: str
    params: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    delay: Duration | None = None
    run_at: datetime | None = None
    hold: bool = False
    idempotency_key: str | None = None
    tags: Sequence[str] = ()
    # A few searchable string pairs (crisper/metadata.py): {"customer": "acme", "region": "eu"}
    metadata: Mapping[str, str] | None = None
    tenant: str = DEFAULT_TENANT
    max_attempts: int | None = None
    # Unique jobs: a key given here (or computed by the type's `unique=`) admits one active
    # job; a second submit gets that job back ("return") or DuplicateJob ("reject").
    unique_key: str | None = None
    on_duplicate: Literal["return", "reject"] = "return"
    # The job's own time limits, instead of its type's (Celery's names: the soft limit raises
    # SoftTimeLimitExceeded in the body, the hard one kills its process); see time_limits.py.
    soft_time_limit: Duration | None = None
    time_limit: Duration | None = None
    schedule_name: str | None = None  # set by the cron unit: the schedule this job fires for
    # Webhooks (crisper/webhooks): the job's final record is POSTed here when it ends.
    callback_url: str | None = None
    fire_time: datetime | None = None
    job_id: uuid.UUID | None = None  # the caller's own id (a Celery task id); default: new


@dataclass(frozen=True)
class BulkResult:
    matched: int
    changed: int
    skipped: int
    errors: dict[str, str] = field(default_factory=dict)


class JobService:
    """Submit, read and steer jobs. Adapters (CLI, HTTP, dashboard) call only this.

    `rerun_node(workflow_id, node, params)`: how a workflow node is retried (with everything
    downstream of it); the workflow service does that.
    """

    def __init__(self, store: Store, settings: Settings, registry: Registry,
                 dispatcher: Dispatcher, live: LivePublisher,
                 rerun_node: Callable[[uuid.UUID, str, dict[str, Any] | None], object]
                 ) -> None:
        from crisper.engine.dispatch import Breaker  # Celery and Kombu load on first use
        from crisper.engine.waker import Waker

        self.store = store
        self.settings = settings
        self.registry = registry
        self.dispatcher = dispatcher
        self.live = live
        self.rerun_node = rerun_node
        self.breaker = Breaker()
        # A submit returns once its job is committed; its wake-up follows on this thread.
        self.waker: Waker[JobRecord] = Waker(
            partial(self._dispatch_now, allowed=True), inline=lambda: dispatcher.inline,
            gather=lambda: dispatcher.wakes.gather_seconds(),
            herald=lambda rs: dispatcher.herald([_dispatch(r) for r in rs]))

    # -- submit -----------------------------------------------------------------------------

    def submit(self, request: SubmitRequest, session: Session | None = None) -> JobRecord:
        return self.submit_many([request], session)[0]

    def submit_many(self, requests: Sequence[SubmitRequest], session: Session | None = None
                    ) -> list[JobRecord]:
        """Create jobs in one transaction: the caller's (outbox) or our own; then wake workers.

        A job with an idempotency key that already exists is answered with the existing job.
        """
        at = utcnow()
        rows = [self._row(r, at) for r in requests]
        send = self.send_now(rows)
        rejects = [r.on_duplicate == "reject" for r in requests]
        if session is not None:
            for row in rows:  # outbox: NULL until sent, so the relay sends it if we die first
                row["dispatched_at"] = None
            records, fresh = self._insert(session, rows, at, rejects)
            if send:
                self._dispatch_after_commit(session, fresh)
            return records
        if len(rows) == 1 and not (rows[0]["idempotency_key"] or rows[0]["unique_key"]):
            # Nothing to look up first: one statement, committed on its own, while its
            # wake-up goes out (a herald; the wake after the commit checks again).
            records = fresh = [JobRecord.from_new_row(rows[0])]
            if send and records[0].state is S.QUEUED:
                self.waker.herald(fresh)
            with self.store.autocommit() as conn:
                job_sql.create(conn, rows, at)
        else:
            with self.store.transaction() as own:
                records, fresh = self._insert(own, rows, at, rejects)
        if send:
            self.waker.wake(fresh)
        return records

    def send_now(self, rows: Sequence[dict[str, Any]]) -> bool:
        """Whether these new rows' wake-ups go out now. Not while the broker is down (the
        breaker is open): then they are stored unsent, and the relay sends them later."""
        if self.breaker.allows():
            return True
        for row in rows:
            row["dispatched_at"] = None
        return False

    def prepare_row(self, r: SubmitRequest, at: datetime) -> dict[str, Any]:
        """The validated row a submit would insert (for callers that insert it themselves:
        batches)."""
        return self._row(r, at)

    def _row(self, r: SubmitRequest, at: datetime, given_later: bool = False
             ) -> dict[str, Any]:
        """`given_later`: a workflow node whose first parameter is a parent's result."""
        job_type = self.registry.get(r.type)
        params = job_type.validate(r.params, given_later=given_later)
        opts = job_type.options
        run_at = r.run_at
        if r.delay is not None:
            run_at = at + timedelta(seconds=_delay_seconds(r.delay))
        if run_at is not None and run_at.tzinfo is None:
            raise InvalidRequest("run_at", "must be timezone-aware (UTC)")
        self._check_names(r, r.queue or opts.queue)
        state = initial_state(r.hold, run_at, at)
        max_attempts = r.max_attempts or opts.retry.attempts
        own = own_limits(r.soft_time_limit, r.time_limit, type_soft=opts.timeout,
                         type_hard=opts.hard_timeout,
                         kill_grace=self.settings.kill_grace_seconds)
        if r.on_duplicate not in ("return", "reject"):
            raise InvalidRequest("on_duplicate", f"must be 'return' or 'reject', "
                                 f"not {r.on_duplicate!r}")
        return {
            "unique_key": limits.unique_key(opts.flow, job_type.name, params, r.unique_key),
            "concurrency_key": limits.concurrency_key(opts.flow, job_type.name, params),
            "schedule_name": r.schedule_name, "fire_time": r.fire_time,
            "id": r.job_id or new_id(), "type": job_type.name, "queue": r.queue or opts.queue,
            "priority": opts.priority if r.priority is None else r.priority,
            "state": state.value, "tenant": r.tenant, "params": params, "tags": list(r.tags),
            "metadata": dict(r.metadata) if r.metadata else None,
            "callback_url": checked_callback_url(r.callback_url),
            "attempt": 0, "max_attempts": max_attempts,
            "retry_policy": opts.retry.to_json(),
            "timeout": opts.timeout if own is None else own.soft,
            "hard_timeout": None if own is None else own.hard,
            "idempotency_key": r.idempotency_key, "created_at": at, "run_at": run_at,
            "queued_at": at if state is S.QUEUED else None,
            # Optimistic: the message goes out right after commit; a failed send clears this.
            "dispatched_at": at if state is S.QUEUED else None,
        }

    def _check_names(self, r: SubmitRequest, queue: str) -> None:
        """Queue, tags and keys as they enter: a queue must be declared and never a broker key."""
        known = self.registry.declared_queues(self.settings.queues)
        if (problem := unknown_queue_problem(queue, known)) is not None:
            raise UnknownQueue("queue", problem, known)
        if r.priority is not None and (problem := priority_problem(r.priority)) is not None:
            raise InvalidRequest("priority", problem)
        if isinstance(r.tags, str):
            raise InvalidRequest("tags", "must be a list of tags, not one text")
        if len(r.tags) > MAX_TAGS:
            raise InvalidRequest("tags", f"at most {MAX_TAGS} tags")
        for i, tag in enumerate(r.tags):
            if (problem := tag_problem(tag)) is not None:
                raise InvalidRequest(f"tags.{i}", problem)
        meta_problem = None if r.metadata is None else metadata_problem(r.metadata)
        if meta_problem is not None:
            raise InvalidRequest(*meta_problem)
        for name, key in (("idempotency_key", r.idempotency_key), ("unique_key", r.unique_key)):
            if key is not None and (problem := text_problem(key, MAX_KEY)) is not None:
                raise InvalidRequest(name, problem)

    def _insert(self, session: Session, rows: list[dict[str, Any]], at: datetime,
                rejects: list[bool], tries: int = 5) -> tuple[list[JobRecord], list[JobRecord]]:
        """Insert the rows; an idempotency key already used answers with its existing job,
        and so does a unique key held by an active job (or DuplicateJob, if asked).

        Returns every job in request order, and the ones this call created.
        """
        existing: dict[int, JobRecord] = {}
        same_as: dict[int, int] = {}  # a row repeating an earlier row's unique key in this batch
        first_with: dict[tuple[str, str], int] = {}
        for i, r in enumerate(rows):
            if r["idempotency_key"]:
                found = job_sql.find_idempotent(session, r["tenant"], r["idempotency_key"])
                if found is not None:
                    existing[i] = found
                    continue
            if r["unique_key"]:
                found = flow_sql.active_unique(session, r["tenant"], r["unique_key"])
                key = (r["tenant"], r["unique_key"])
                if found is None and key in first_with:
                    same_as[i] = first_with[key]
                elif found is None:
                    first_with[key] = i
                if found is not None or i in same_as:
                    if rejects[i]:
                        raise DuplicateJob(r["unique_key"], found.id if found else "(this batch)")
                    if found is not None:
                        existing[i] = found
        fresh = [r for i, r in enumerate(rows) if i not in existing and i not in same_as]
        if any(r["idempotency_key"] or r["unique_key"] for r in fresh):
            try:  # a concurrent submit with the same key may win the race: then replay it
                with session.begin_nested():
                    job_sql.create(session, fresh, at)
            except IntegrityError:
                if tries <= 1:
                    raise
                return self._insert(session, rows, at, rejects, tries - 1)
        elif fresh:
            job_sql.create(session, fresh, at)
        created = {r["id"]: JobRecord.from_new_row(r) for r in fresh}
        records = [
            existing[i] if i in existing
            else created[rows[same_as.get(i, i)]["id"]] for i, r in enumerate(rows)
        ]
        return records, list(created.values())

    def _dispatch_now(self, records: Sequence[JobRecord], allowed: bool = False,
                      mark_sent: bool = False) -> None:
        """Wake workers for committed jobs. Never raises: the jobs exist whatever happens here.

        With the broker down (or the breaker open, or no broker configured or readable), the
        jobs are left for the relay; a refused message is recorded on its jobs.
        """
        todo = [_dispatch(r) for r in records if r.state is S.QUEUED]
        if not todo:
            return
        ids = [d.id for d in todo]
        if not (allowed or self.breaker.allows()):
            if not mark_sent:  # outbox rows are stored unsent already
                self._mark_undispatched(ids)
            return
        try:
            refusals = self.dispatcher.publish(todo)
        except Exception as exc:  # noqa: BLE001 - the job is committed: report it, never fail
            self.breaker.trip(exc)
            if not mark_sent:
                self._mark_undispatched(ids)
            return
        self.breaker.reset()
        if refusals:
            self._record_refusals(todo, refusals)
        if mark_sent:
            refused = {i for r in refusals for i in r.ids}
            self._mark_sent([i for i in ids if i not in refused])

    def _mark_sent(self, ids: list[uuid.UUID]) -> None:
        """Outbox rows are stored unsent; once their wake-ups are out, say so."""
        try:
            with self.store.transaction() as session:
                sweep_sql.mark_dispatched(session, ids, utcnow())
        except CrisperError as exc:  # still unsent in the database: the relay sends them again
            log.warning("%d wake-up(s) sent but not marked sent (%s)", len(ids), exc)

    def _mark_undispatched(self, ids: list[uuid.UUID]) -> None:
        """Leave the job for the relay to send once the broker is back."""
        try:
            with self.store.transaction() as session:
                sweep_sql.mark_dispatched(session, ids, None)
        except CrisperError as exc:
            log.warning("%d job(s) stored, but not marked for the relay (%s); the lost-message "
                        "sweep sends them", len(ids), exc)

    def _record_refusals(self, todo: list[sweep_sql.Dispatch],
                         refusals: list[Refusal]) -> None:
        from crisper.engine.dispatcher import record_refusals

        try:
            with self.store.transaction() as session:
                record_refusals(session, todo, refusals, utcnow(),
                                self.settings.tick_seconds)
        except CrisperError as exc:
            log.warning("broker refused %d message(s); not recorded: %s", len(refusals), exc)

    def _dispatch_after_commit(self, session: Session, records: list[JobRecord]) -> None:
        """Outbox: wake workers only once the caller's transaction has committed."""
        if not session.info.get(_LISTENING):
            session.info[_LISTENING] = True
            event.listen(session, "after_commit", self._after_commit)
            event.listen(session, "after_rollback", _forget_pending)
        session.info.setdefault(_PENDING, []).extend(records)

    def _after_commit(self, session: Session) -> None:
        self.dispatch_committed(session.info.pop(_PENDING, []))

    def dispatch_committed(self, records: Sequence[JobRecord]) -> None:
        """Wake workers for jobs a caller's transaction has committed, then mark them sent.

        Their rows say "not sent" (dispatched_at NULL) until then: a process that dies before
        or during the publish leaves them to the relay. A relay that sends one as well only
        makes a duplicate message, which the claim drops. Never raises into the caller.
        """
        self._dispatch_now(records, mark_sent=True)

    # -- read -------------------------------------------------------------------------------

    def get(self, job_id: object, tenant: str | None = None) -> JobRecord:
        parsed = parse_id(job_id)
        if parsed is None:
            raise JobNotFound(job_id)
        with self.store.read() as session:
            record = job_sql.get(session, parsed, tenant)
        if record is None:
            raise JobNotFound(job_id)
        return record

    def list_jobs(self, f: job_sql.JobFilter, before: object = None, limit: int = 50,
                  after: object = None) -> list[JobRecord]:
        """Newest first; `before`/`after` (job ids) give the older/newer page."""
        older_than = parse_id(before) if before is not None else None
        newer_than = parse_id(after) if after is not None else None
        with self.store.read() as session:
            return job_sql.list_jobs(session, f, older_than, limit, newer_than)

    def events(self, job_id: object, tenant: str | None = None) -> list[EventRecord]:
        record = self.get(job_id, tenant)
        with self.store.read() as session:
            return job_sql.events(session, record.id)

    def logs(self, job_id: object, tenant: str | None = None, after: int = 0,
             limit: int = 1000) -> list[LogRecord]:
        record = self.get(job_id, tenant)
        with self.store.read() as session:
            return job_sql.logs(session, record.id, after, limit)

    # -- steer ------------------------------------------------------------------------------

    def cancel(self, job_id: object, tenant: str | None = None) -> JobRecord:
        """Cancel now if waiting; if running, ask it to stop (forced after the grace period).
        An observed Celery task is not Crisper's: it gets Celery's revoke(terminate=True)."""
        record = self._steerable(job_id, tenant, "cancelled")
        if record.source == "observed":
            from crisper.engine.observe import revoke

            revoke(self.store, self.dispatcher, record)
            return self.get(record.id)
        return self._act(job_id, tenant, _cancel)

    def start(self, job_id: object, tenant: str | None = None) -> JobRecord:
        self._steerable(job_id, tenant, "started")
        record = self._act(job_id, tenant, job_sql.start)
        self._dispatch_now([record])
        return record

    def retry(self, job_id: object, tenant: str | None = None,
              params: dict[str, Any] | None = None) -> JobRecord:
        """Run an ended job again; with `params` (checked by its type): a replay with edit."""
        node = self._steerable(job_id, tenant, "retried")
        if node.workflow_id is not None and node.workflow_node is not None:
            # a workflow node reruns with everything downstream of it, waiting for it
            self.rerun_node(node.workflow_id, node.workflow_node, params)
            return self.get(node.id)
        edited = None if params is None else self.registry.get(node.type).validate(params)
        record = self._act(job_id, tenant, partial(job_sql.restart, params=edited))
        self._dispatch_now([record])
        return record

    def _steerable(self, job_id: object, tenant: str | None, action: str) -> JobRecord:
        """The job, read once; NotControlled if it is an observed Celery task and the action
        is not a cancel (which is Celery's revoke for those)."""
        record = self.get(job_id, tenant)
        if record.source == "observed" and action != "cancelled":
            raise NotControlled(record.id, action)
        return record

    def _act(self, job_id: object, tenant: str | None, action: Any) -> JobRecord:
        parsed = parse_id(job_id)
        if parsed is None:
            raise JobNotFound(job_id)
        job: JobRecord | None = None
        try:
            with self.store.transaction() as session:
                job = job_sql.get(session, parsed, tenant, for_update=True)
                if job is None:
                    raise JobNotFound(job_id)
                action(session, job, utcnow())
                record = job_sql.get(session, parsed)
        except IntegrityError:  # a retry whose unique key another active job holds
            if job is None or job.unique_key is None:
                raise
            with self.store.read() as session:
                holder = flow_sql.active_unique(session, job.tenant, job.unique_key)
            raise DuplicateJob(job.unique_key, holder.id if holder else "another job",
                               "retry this one once that job has ended") from None
        assert record is not None
        self.live.publish(record.id, "state", {"state": record.state.value})
        return record

    def bulk(self, action: str, f: job_sql.JobFilter, limit: int = 10_000) -> BulkResult:
        """Apply cancel/retry/start to every job the filter matches (at most `limit`)."""
        method = {"cancel": self.cancel, "retry": self.retry, "start": self.start}[action]
        with self.store.read() as session:
            ids = job_sql.matching_ids(session, f, limit)
        changed, errors = 0, {}
        for job_id in ids:
            try:
                method(job_id, f.tenant)
                changed += 1
            except (InvalidTransition, JobNotFound, WorkflowBusy) as exc:
                errors[str(job_id)] = str(exc)
        return BulkResult(matched=len(ids), changed=changed, skipped=len(ids) - changed,
                          errors=errors)


MAX_DELAY_SECONDS = 10 * 365 * 86400.0
MAX_TAGS = 50


def _delay_seconds(delay: Duration) -> float:
    try:
        value = seconds(delay)
    except InvalidRequest as exc:
        raise InvalidRequest("delay", exc.reason) from None
    if value > MAX_DELAY_SECONDS:
        raise InvalidRequest("delay", "must be at most ten years")
    return value


def _cancel(session: Session, job: JobRecord, at: datetime) -> JobState:
    """Cancel one job; a workflow node's children learn of it in the same transaction."""
    state = job_sql.cancel(session, job, at)
    if state is S.CANCELLED and job.workflow_id is not None:
        from crisper.store import workflows as workflow_sql

        for dispatch in workflow_sql.release(session, job.id, state, at):  # "run" children
            log.debug("node %s queued by a cancelled parent; the relay sends it", dispatch.id)
    return state


def _forget_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


def _dispatch(record: JobRecord) -> sweep_sql.Dispatch:
    return sweep_sql.Dispatch(record.id, record.type, record.queue, record.priority,
                              limits=sweep_sql.own_limits_of(record))

