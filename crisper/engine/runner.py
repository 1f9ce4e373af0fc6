"""Running one job: claim -> execute -> record the outcome, each step small and named."""

from __future__ import annotations

import itertools
import logging
import os
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from billiard.process import current_process
from celery.exceptions import Reject

from crisper.engine.context import JobContext, install_log_handler
from crisper.engine.leases import LeaseKeeper, beat_interval, store_news
from crisper.engine.outcomes import Outcome, execute
from crisper.engine.time_guard import TimeGuard, limits_of
from crisper.engine.transport import deleted_on_receipt
from crisper.engine.wakes import MARKER_HEADER
from crisper.errors import CrisperError, StoreUnavailable
from crisper.ids import parse_id
from crisper.states import JobState
from crisper.store import attempts as attempt_sql
from crisper.store import utcnow

if TYPE_CHECKING:
    from crisper.engine.dispatcher import Dispatcher
    from crisper.flow.gate import FlowGate
    from crisper.live import LivePublisher
    from crisper.registry import JobType, Registry
    from crisper.settings import Settings
    from crisper.store import HeldConnection, Store

log = logging.getLogger(__name__)
S = JobState
LIVE_PROGRESS_INTERVAL = 0.1  # seconds between live progress messages of one job
# A claim that found only locked rows looks again after LOCKED_ROW_PAUSE (doubling), for up to
# LOCKED_ROW_PATIENCE seconds (see Runner._claim_next_unlocked).
LOCKED_ROW_PAUSE = 0.002
LOCKED_ROW_PATIENCE = 1.0


@dataclass
class Following:
    """A slot's wish to claim its queue's next job in the statement that records the
    outcome of the one it ran (see attempts.finish_then_claim_next); `job` is what it got,
    `drained` whether that statement saw the queue empty (then no locked row needs waiting
    out: a job submitted since is unlocked, or has its own wake-up); `conn` the connection
    the wake-up's claims and outcomes share."""

    queue: str
    task_id: str
    conn: HeldConnection
    job: attempt_sql.Claimed | None = None
    drained: bool = False


class Runner:
    """The body of every Crisper task on a worker."""

    def __init__(self, store: Store, settings: Settings, registry: Registry, gate: FlowGate,
                 live: LivePublisher, dispatcher: Dispatcher) -> None:
        self.store = store
        self.settings = settings
        self.registry = registry
        self.gate = gate
        self.live = live
        self.dispatcher = dispatcher
        self.leases = LeaseKeeper(store, settings.lease_seconds,
                                  beat_interval(settings.lease_seconds, settings.heartbeat_seconds))
        self._pid = os.getpid()
        self._live_at: dict[Any, float] = {}
        # Orders one attempt's live progress messages for the stream (it drops older ones).
        self._live_seq = itertools.count(1)
        self._types: tuple[list[str], bool] | None = None
        self.guard = TimeGuard()
        install_log_handler()

    def run(self, job_type: JobType, job_ids: list[str], request: Any) -> None:
        """Take a wake-up for the queue it came from: run its best queued jobs, one at a time.

        The database decides what runs: after each job this slot claims the next best one of
        the queue (priority, then submission order) among the types this worker registered,
        until none is left, so most jobs need no message of their own and a stale wake-up
        finds nothing, quietly. The wake-up's marker is cleared before the first claim, here or
        in the main process (engine/wakes.py: so that claim sees a job whose publish it saved).
        Ids a message names (older or hand-made messages) only matter when it ran nothing:
        then one line says why each was not run. Waiting jobs stay queued and cancellable.
        """
        self._reset_after_fork()
        ids = [parse_id(x) for x in job_ids] if isinstance(job_ids, list) else [None]
        if None in ids:
            log.warning("message %s (%s) names no valid job id: %r; dropped", request.id,
                        job_type.name, job_ids)
        named = [i for i in ids if i is not None]
        worker = f"{request.hostname or 'local'}:{os.getpid()}"
        queue = (getattr(request, "delivery_info", None) or {}).get("routing_key") or None
        task_id = request.id or ""
        if queue is None:  # not from a broker (testing's inline worker): the named jobs only
            for job_id in named:
                for one in self._claim_or_requeue(job_id, worker, task_id, job_type, queue):
                    self._run_one(one, worker)
            return
        if not _marker_taken(request):
            self.dispatcher.wakes.taken(queue, job_type.name)
        following = Following(queue, task_id, self.store.held_autocommit())
        try:
            ran = self._run_queue(following, worker)
        finally:
            following.conn.release()
        if not ran:
            for job_id in named:
                self._explain_unclaimed(job_id, job_type, queue)

    def _run_queue(self, following: Following, worker: str) -> int:
        """Run the queue's best jobs one at a time until none is left (see `run`); answers
        how many ran."""
        queue, task_id, ran = following.queue, following.task_id, 0
        job = self._claim_next_or_requeue(queue, worker, task_id, following.conn)
        while job is not None:
            if ran == 0 and job.others_waiting is not False:  # one more slot looks
                self._wake_another(queue, following.conn)
            following.job, following.drained = None, False
            kept = self._run_one(job, worker, following)
            ran += 1
            if not kept:
                # Its lease was taken: a forced cancel may have recorded it and be about to
                # kill this process by the message's task id, which would strike the next
                # job if this one claimed it. Leave the rest to another slot.
                self._wake_another(queue, following.conn)
                break
            # Its statement found the queue empty: one plain claim still looks for a job
            # submitted since, which then needs no wake-up of its own (a producer submitting
            # one job at a time pays for each one it publishes).
            job = following.job or self._claim_next_or_requeue(
                queue, worker, task_id, following.conn, patient=not following.drained)
        return ran

    def _run_one(self, job: attempt_sql.Claimed, worker: str,
                 following: Following | None = None) -> bool:
        """Run one claimed job under its own time limits, then free its concurrency slot.
        Answers whether its lease held to the end (its outcome is the one recorded)."""
        job_type = self.registry.get(job.type)
        ctx = self._context(job)
        self.leases.hold(ctx)
        kept = self.run_claimed(job_type, job, ctx, worker, following)
        self.gate.release(job_type.name, job_type.options.flow, job.params)  # wake waiters
        return kept

    def _wake_another(self, queue: str, held: HeldConnection) -> None:
        """A backlog: wake one more slot, so that every slot works while jobs wait. Asked once
        per wake-up, so that a job submitted alone costs one message, not two."""
        try:
            type_name = self._queued_type(queue, held)
            if type_name is not None:
                self.dispatcher.wake(queue, type_name)
        except Exception as exc:  # noqa: BLE001 - the relay wakes the queue if this is lost
            log.debug("could not wake another slot for %s: %s", queue, exc)

    def _claim_next_or_requeue(self, queue: str, worker: str, task_id: str,
                               held: HeldConnection, patient: bool = True
                               ) -> attempt_sql.Claimed | None:
        """The next job of the queue (`patient`: waiting out rows locked for a moment); if the
        database cannot answer, the message goes back to the broker (not acknowledged) so
        that the queue is woken again once the store is back."""
        try:
            if not patient:
                return self.claim_next(queue, worker, task_id, held)
            return self._claim_next_unlocked(queue, worker, task_id, held)
        except StoreUnavailable as exc:
            log.warning("could not claim from queue %s: %s; its message is requeued", queue, exc)
            time.sleep(1.0)  # a redelivery at once would only find the store down again
            raise Reject(str(exc), requeue=True) from None

    def _claim_next_unlocked(self, queue: str, worker: str, task_id: str,
                             held: HeldConnection) -> attempt_sql.Claimed | None:
        """`claim_next`, waiting out rows another transaction holds locked for a moment.

        A claim skips locked rows, and a queued row is locked briefly by more than claims: the
        submitter marking it sent, a relay publishing for it, a cancel. Finding nothing while
        the queue holds such a row must not end the wake-up (its marker is gone, so no one
        else may be coming): look again shortly, and if the row stays locked, send a wake-up
        (marker-deduplicated) so that a later claim finds it.
        """
        pause = LOCKED_ROW_PAUSE
        deadline = time.monotonic() + LOCKED_ROW_PATIENCE
        while True:
            job = self.claim_next(queue, worker, task_id, held)
            if job is not None or self._queued_type(queue, held) is None:
                return job
            if time.monotonic() >= deadline:
                self._wake_another(queue, held)
                return None
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _queued_type(self, queue: str, held: HeldConnection) -> str | None:
        """The type of the queue's best job this worker may claim, locked or not (a hint)."""
        with held.step() as conn:
            return attempt_sql.queued_type(conn, queue, self._claimable_types()[0])

    def claim_next(self, queue: str, worker: str, task_id: str,
                   held: HeldConnection) -> attempt_sql.Claimed | None:
        """The best queued job of `queue` among the registered types, claimed, or None.

        Without limited types: one statement. With them, the best job is locked and, if its
        type is limited, admitted by the flow gate in the same transaction; a job the gate
        defers (rate, concurrency) leaves the queue, and the next best is tried. `held`: the
        wake-up's connection, for the one statement.
        """
        forcible = can_force_stop()
        names, gated = self._claimable_types()
        for retry in (True, False):  # a pooled connection may have died since its last use
            try:
                if not gated:
                    with held.step() as conn:
                        return attempt_sql.claim_next(conn, queue, names, worker, task_id,
                                                      self.settings.lease_seconds, utcnow(),
                                                      forcible=forcible)
                return self._claim_next_gated(queue, names, worker, task_id, forcible)
            except StoreUnavailable:
                if not retry:
                    raise
        return None

    def _claim_next_gated(self, queue: str, names: list[str], worker: str, task_id: str,
                          forcible: bool) -> attempt_sql.Claimed | None:
        tried: set[Any] = set()
        while True:
            with self.store.transaction() as session:
                best = attempt_sql.next_queued(session, queue, names)
                if best is None or best[0] in tried:  # the gate kept it queued: leave it
                    return None
                tried.add(best[0])
                job_type = self.registry.get(best[1])
                claimed = self.gate.claim_in(session, job_type.name, job_type.options.flow,
                                             [best[0]], worker, task_id, forcible=forcible)
            if claimed:
                return claimed[0]

    def _claimable_types(self) -> tuple[list[str], bool]:
        """The job types this worker has registered (and so may run), and whether any of them
        has flow limits (then claims go through the gate)."""
        if self._types is None:
            types = list(self.registry)
            self._types = (sorted(t.name for t in types),
                           any(t.options.flow.limited for t in types))
        return self._types

    def _claim_or_requeue(self, job_id: uuid.UUID, worker: str, task_id: str,
                          job_type: JobType, queue: str | None) -> list[attempt_sql.Claimed]:
        """Claim one job; if the database cannot answer, the message goes back to the broker
        (not acknowledged) so that the job is tried again as soon as the store is back."""
        try:
            claimed = self.claim([job_id], worker, task_id, job_type, queue)
        except StoreUnavailable as exc:
            log.warning("could not claim job %s (%s): %s; its message is requeued", job_id,
                        job_type.name, exc)
            time.sleep(1.0)  # a redelivery at once would only find the store down again
            raise Reject(str(exc), requeue=True) from None
        if not claimed:
            self._explain_unclaimed(job_id, job_type, queue)
        return claimed

    def claim(self, ids: list[Any], worker: str, task_id: str,
              job_type: JobType | None = None, queue: str | None = None
              ) -> list[attempt_sql.Claimed]:
        """Claim in one statement; limited types, and jobs of paused queues, go through the gate.

        With `job_type` (and the `queue` the message came from) only a job of that type on that
        queue is claimed: the message does not decide which function runs on which job.
        """
        name = job_type.name if job_type is not None else None
        forcible = can_force_stop()
        if job_type is not None and job_type.options.flow.limited:
            return self.gate.claim(job_type.name, job_type.options.flow, ids, worker,
                                           task_id, forcible=forcible)
        for retry in (True, False):  # a pooled connection may have died since its last use
            try:
                with self.store.autocommit() as session:
                    claimed = attempt_sql.claim(session, ids, worker, task_id,
                                                self.settings.lease_seconds, utcnow(),
                                                skip_paused=True, job_type=name, queue=queue,
                                                forcible=forcible)
                break
            except StoreUnavailable:
                if not retry:
                    raise
        if len(claimed) < len(ids) and job_type is not None:  # duplicates, or a paused queue
            got = {c.id for c in claimed}
            claimed += self.gate.claim(job_type.name, job_type.options.flow,
                                               [i for i in ids if i not in got],
                                               worker, task_id, forcible=forcible)
        return claimed

    def _explain_unclaimed(self, job_id: uuid.UUID, job_type: JobType, queue: str | None
                           ) -> None:
        """One log line for a message that ran nothing: unknown id, wrong type or queue, or a
        job no longer queued (a duplicate, cancelled, held or finished)."""
        try:
            with self.store.read() as session:
                found = attempt_sql.unclaimable(session, [job_id])
        except CrisperError as exc:
            log.warning("message for job %s (%s) claimed nothing: %s", job_id, job_type.name, exc)
            return
        if not found:
            log.warning("message for unknown job %s (%s): dropped", job_id, job_type.name)
        elif found[0].type != job_type.name or (queue and found[0].queue != queue):
            log.warning("message names %s on queue %s, but job %s is a %s on queue %s: dropped",
                        job_type.name, queue, job_id, found[0].type, found[0].queue)
        elif found[0].state != JobState.QUEUED.value:
            log.info("message for job %s (%s) dropped: the job is %s, not queued", job_id,
                     job_type.name, found[0].state)

    def run_claimed(self, job_type: JobType, job: attempt_sql.Claimed, ctx: JobContext,
                    worker: str, following: Following | None = None) -> bool:
        """Execute one claimed job (its lease already kept) and record how it ended; answers
        whether the outcome was recorded (False: the lease was lost first)."""
        try:
            outcome = self._execute_guarded(job_type, ctx, job)
            return self._record(job, ctx, outcome, worker, following)
        finally:
            self.leases.release(ctx)
            self._live_at.pop(job.id, None)

    def _execute_guarded(self, job_type: JobType, ctx: JobContext, job: attempt_sql.Claimed
                         ) -> Outcome:
        """Execute under the job's own time limits, where a forced stop works (prefork)."""
        if not can_force_stop():
            return execute(job_type, ctx, job)
        opts = job_type.options
        type_hard = None if opts.timeout is None else opts.timeout + opts.kill_grace(
            self.settings.kill_grace_seconds)
        self.guard.start(job.id, job.type, limits_of(job.timeout, job.hard_timeout, type_hard))
        try:
            return execute(job_type, ctx, job)
        finally:
            self.guard.stop()

    # -- steps ------------------------------------------------------------------------------

    def _context(self, job: attempt_sql.Claimed) -> JobContext:
        s = self.settings
        ctx = JobContext(
            job_id=job.id, job_type=job.type, attempt=job.attempt,
            max_attempts=job.max_attempts, lease_token=job.lease_token,
            lease_seconds=s.lease_seconds, max_log_lines=s.max_log_lines,
            on_progress=self._publish_progress, on_log=self._publish_log,
            on_still_running=self._publish_running,
        )
        if job.workflow_id is not None:  # a workflow node: the results it receives
            from crisper.engine.nodes import node_inputs

            ctx.parents, ctx.inputs = node_inputs(self.store, self.registry, job)
        return ctx

    def _publish_progress(self, ctx: JobContext) -> None:
        now = time.monotonic()
        if now - self._live_at.get(ctx.job_id, 0.0) >= LIVE_PROGRESS_INTERVAL:
            self._live_at[ctx.job_id] = now
            self.live.publish(ctx.job_id, "progress", {
                "current": ctx.progress_current, "total": ctx.progress_total,
                "message": ctx.progress_message, "attempt": ctx.attempt,
                "seq": next(self._live_seq),
            })

    def _publish_running(self, ctx: JobContext) -> None:
        self.live.publish(ctx.job_id, "state", {"state": "running",
                                                         "attempt": ctx.attempt})

    def _publish_log(self, ctx: JobContext, line: dict[str, Any]) -> None:
        self.live.publish(ctx.job_id, "log", {
            "level": line["level"], "message": line["message"], "at": line["at"].isoformat(),
        })

    def _record(self, job: attempt_sql.Claimed, ctx: JobContext, outcome: Outcome,
                worker: str, following: Following | None = None) -> bool:
        """Write the outcome, however long the database is away: it is fenced by the lease
        token, so writing late is safe (a lifeline that rescued the job meanwhile wins).
        Answers whether it was written (False: the lease was lost)."""
        if outcome.state is None:
            log.warning("job %s lost its lease; its outcome is not recorded", job.id)
            return False
        pause, warned = 0.5, False
        while True:
            try:
                recorded = self._write_outcome(job, ctx, outcome, worker, following)
                break
            except StoreUnavailable as exc:
                if not warned:
                    log.warning("outcome of %s (%s) kept until the database is back: %s",
                                job.id, outcome.state.value, exc)
                    warned = True
                time.sleep(pause)
                pause = min(pause * 2, 5.0)
        if recorded:
            self.live.publish(job.id, "state", {"state": outcome.state.value,
                                                        "attempt": job.attempt})
        else:
            log.warning("job %s: lease lost before the outcome was written", job.id)
        return recorded

    def _write_outcome(self, job: attempt_sql.Claimed, ctx: JobContext, outcome: Outcome,
                       worker: str, following: Following | None = None) -> bool:
        """One statement when nothing else waits to be stored (with the claim of the queue's
        next job, if `following` asks and nothing else is written); else one transaction."""
        target = outcome.state
        assert target is not None
        if following is not None and self._may_claim_with_outcome(job, ctx, target):
            with following.conn.step() as conn:
                recorded, following.job, waiting = attempt_sql.finish_then_claim_next(
                    conn, job.id, job.lease_token, target, utcnow(), reason=outcome.reason,
                    worker=worker, result=outcome.result, error=outcome.error,
                    retry_at=outcome.retry_at, queue=following.queue,
                    types=self._claimable_types()[0], task_id=following.task_id,
                    lease_seconds=self.settings.lease_seconds, forcible=can_force_stop())
            following.drained = recorded and not waiting
            return recorded

        def finish(db: Any) -> bool:
            if target is S.QUEUED:  # handed back: the attempt is not spent, nor a worker lost
                return attempt_sql.rescue(db, job.id, job.lease_token, utcnow(),
                                          reason=outcome.reason, counted=False, worker=worker)
            return attempt_sql.finish(
                db, job.id, job.lease_token, target, utcnow(), reason=outcome.reason,
                worker=worker, result=outcome.result, error=outcome.error,
                retry_at=outcome.retry_at, notifies=job.notifies,
            )

        if job.workflow_id is not None:
            return self._write_node_outcome(job, ctx, outcome, worker)
        if not ctx.has_news():
            with self.store.autocommit() as conn:
                return finish(conn)
        with self.store.transaction() as session:
            store_news(session, ctx, final=True)
            return finish(session)

    def _may_claim_with_outcome(self, job: attempt_sql.Claimed, ctx: JobContext,
                                target: JobState) -> bool:
        """Whether the outcome is a plain end (no outbox rows, no workflow children, no news
        to store, not a hand-back) and claims need no flow gate (PostgreSQL only)."""
        return (target is not S.QUEUED and not job.notifies and job.workflow_id is None
                and not ctx.has_news() and not self._claimable_types()[1]
                and self.store.dialect == "postgresql")

    def _write_node_outcome(self, job: attempt_sql.Claimed, ctx: JobContext, outcome: Outcome,
                            worker: str) -> bool:
        """A workflow node: its outcome and its children's release in one transaction, then
        the wake-ups of the children it queued (left to the relay if this process dies)."""
        from crisper.engine.nodes import write_node_outcome

        return write_node_outcome(self.store, self.dispatcher, job, outcome, worker,
                                  lambda session: store_news(session, ctx, final=True))

    def _reset_after_fork(self) -> None:
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self.store.dispose()
            self.live.reset()
            self.leases.forget_after_fork()
            self.dispatcher.wakes.reset_after_fork()
            self.guard = TimeGuard()


def _marker_taken(request: Any) -> bool:
    """Whether the worker's main process deleted the message's marker when it took it
    (engine/transport.py). Celery's request holds each header as an attribute."""
    return deleted_on_receipt({MARKER_HEADER: getattr(request, MARKER_HEADER, None)}) is not None


def can_force_stop() -> bool:
    """Whether this attempt runs where a forced stop works: a prefork pool child, a process
    of its own that `revoke(terminate=True)` and hard time limits can kill. Threads, solo,
    gevent and eventlet run jobs inside the worker process, which cannot be stopped alone."""
    return str(current_process().name).startswith("ForkPoolWorker")
