"""The Crisper app: settings, job types, and lazily built store, Celery app and services."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from crisper import cron as cron_rules
from crisper.adoption import Adopted, adopt, adopted_settings, define_job
from crisper.adoption.canvas import PORT_ATTRIBUTE, CeleryPort
from crisper.adoption.canvas import install as install_canvas
from crisper.durations import Duration
from crisper.errors import ConfigurationError, InvalidRequest
from crisper.flow.limits import (
    ConcurrencyLimit,
    KeySpec,
    RateLimit,
    UniqueSpec,
    check_limit_name,
    flow_options,
    parse_rate,
)
from crisper.names import schedule_name_problem
from crisper.registry import DEFAULT_QUEUE, JobType, Registry, job_options
from crisper.retention import Retention
from crisper.retry import Retry
from crisper.schedules import CodeSchedule
from crisper.service import JobService, SubmitRequest
from crisper.settings import Settings
from crisper.states import JobState

if TYPE_CHECKING:
    from celery import Celery
    from sqlalchemy.orm import Session

    from crisper.batches import BatchService
    from crisper.cron import Catchup, Overlap
    from crisper.engine.dispatch import Refusal
    from crisper.engine.dispatcher import Dispatcher
    from crisper.engine.observe import Observer
    from crisper.engine.runner import Runner
    from crisper.engine.worker import WorkerPresence
    from crisper.flow.gate import FlowGate
    from crisper.flow.queues import QueueService
    from crisper.flow.view import LimitView
    from crisper.handle import JobHandle
    from crisper.live import LivePublisher
    from crisper.maintenance.loop import MaintenanceLoop
    from crisper.monitor import QueueInfo, WorkerInfo
    from crisper.reads import JobPage
    from crisper.schedules import ScheduleService
    from crisper.store import Store
    from crisper.store.sweeps import Dispatch
    from crisper.webhooks.service import WebhookService
    from crisper.workflow_service import WorkflowService
    from crisper.workflows import Policy, Workflow


class Crisper:
    """One application's job control plane. Building it opens no connection; using it does."""

    def __init__(self, name: str = "crisper", *, settings: Settings | None = None,
                 celery: Celery | None = None) -> None:
        self.name = name
        self.settings = settings or Settings()
        self.registry = Registry()
        # Named limits shared by job types (rate_limit(), concurrency_limit()), by name.
        self.limits: dict[str, RateLimit | ConcurrencyLimit] = {}
        # Schedules declared in code, by name; the scheduler syncs them into the store at start.
        self.code_schedules: dict[str, CodeSchedule] = {}
        self._existing_celery = celery
        # What Celery's call surface (each job type's .delay(), canvas, the adopting consumer,
        # the result backend) uses of this app: functions of its parts, built on first use.
        self.celery_port = CeleryPort(
            self.registry, submit=lambda request: self.jobs.submit(request),
            cancel=lambda job_id: self.jobs.cancel(job_id),
            submit_workflow=lambda workflow: self.workflows.submit(workflow),
            store=lambda: self.store, celery=lambda: self.celery)
        install_canvas()  # chain, group and chord of Crisper job types become workflows
        self.adopted: Adopted | None = None
        self.presence: WorkerPresence | None = None  # a wrapped app's worker presence
        if celery is not None:  # its broker, routes and worker learn about Crisper now
            self._adopt(celery)
        if celery is not None and self.settings.observe:
            self.observer.connect()  # plain Celery tasks of the app are recorded (observe mode)

    def _adopt(self, celery: Celery) -> None:
        """Wrap `celery` (crisper/adoption): its broker and queues, its worker and results."""
        from crisper.engine.worker import WorkerPresence

        self.settings = adopted_settings(self.settings, celery)
        self.adopted = Adopted(self.celery_port, self.define, self.schedule,
                               lambda: self.settings.resolved_redis_url())
        adopt(celery, self.celery_port)
        self.presence = WorkerPresence(self.store, self.settings)
        self.presence.connect()

    def __repr__(self) -> str:
        return f"<Crisper {self.name} types={self.registry.names()}>"

    # -- job types --------------------------------------------------------------------------

    def job(self, func: Callable[..., Any] | None = None, /, *, name: str | None = None,
            queue: str | None = None, priority: int = 0,
            timeout: Duration | tuple[Duration, Duration] | None = None,
            cancel_grace: Duration | None = None,
            retry: Retry | int | None = None, rate_limit: str | RateLimit | None = None,
            burst: int | None = None, rate_key: KeySpec | None = None,
            concurrency: int | ConcurrencyLimit | None = None,
            concurrency_key: KeySpec | None = None,
            unique: UniqueSpec = None, batch: int | None = None,
            schedule: str | None = None, retention: Retention | Duration | None = None,
            **celery_options: Any) -> Any:
        """Register a function as a job type; its signature (after ctx) is the parameter schema.

        Flow control (docs/flow-control.md): `rate_limit="50/m"` across all workers, per
        `rate_key` (a param name or a function of the params); at most `concurrency` running
        per `concurrency_key`; `unique` admits one active job per key. (`batch` is accepted
        and ignored, with a DeprecationWarning: every wake-up now covers its queue's backlog.)
        `rate_limit` and `concurrency` also take a named limit shared with other job types
        (`rate_limit()`, `concurrency_limit()`). `schedule="0 3 * * *"` runs it on that cron
        (UTC, no params) under a schedule named after the type; see `schedule()` for more.
        `timeout`: the soft limit, or (soft, hard) like `("1h55m", "2h")`; `cancel_grace`:
        how long a running job may ignore a cancel before it is stopped (both default to the
        app's settings). `retention`: how long its finished jobs are kept, one age or `Retention(
        succeeded=..., failed=..., cancelled=..., payload=...)`.
        In an app wrapping a Celery app (`Crisper(..., celery=app)`), a function without `ctx`
        and Celery's task options are accepted too (docs/migrating-from-celery.md).
        """
        given = dict(name=name, queue=queue, priority=priority, timeout=timeout,
                     cancel_grace=cancel_grace, retry=retry, rate_limit=rate_limit, burst=burst,
                     rate_key=rate_key, concurrency=concurrency,
                     concurrency_key=concurrency_key, unique=unique, batch=batch,
                     schedule=schedule, retention=retention)

        def register(f: Callable[..., Any]) -> JobType:
            if self._existing_celery is not None or celery_options:
                return define_job(self.adopted, f, given, celery_options)
            return self.define(f, **given)  # type: ignore[arg-type]

        return register(func) if func is not None else register

    def define(self, f: Callable[..., Any], *, name: str | None = None,
               queue: str | None = None, priority: int = 0,
               timeout: Duration | tuple[Duration, Duration] | None = None,
               cancel_grace: Duration | None = None,
               retry: Retry | int | None = None, rate_limit: str | RateLimit | None = None,
               burst: int | None = None, rate_key: KeySpec | None = None,
               concurrency: int | ConcurrencyLimit | None = None,
               concurrency_key: KeySpec | None = None,
               unique: UniqueSpec = None, batch: int | None = None,
               schedule: str | None = None, retention: Retention | Duration | None = None,
               job_class: type[JobType] = JobType) -> JobType:
        """Register `f` (ctx first) as a job type of class `job_class`; see job()."""
        queue = queue or DEFAULT_QUEUE
        if batch is not None:
            warnings.warn("batch= no longer changes anything (every wake-up message covers its "
                          "queue's backlog) and will be removed", DeprecationWarning,
                          stacklevel=3)
        options = job_options(queue=queue, priority=priority, timeout=timeout, retry=retry,
                              cancel_grace=cancel_grace)
        if retention is not None:
            kept = (retention if isinstance(retention, Retention)
                    else Retention.every_state(retention))
            options = replace(options, retention=kept)
        flow = flow_options(f, name or f.__name__, rate_limit=rate_limit, burst=burst,
                            rate_key=rate_key, concurrency=concurrency,
                            concurrency_key=concurrency_key, unique=unique)
        job_type = job_class(f, name or f.__name__, replace(options, flow=flow),
                             submit=self.submit, celery_calls=self.celery_port)
        self.registry.add(job_type)
        if schedule is not None:
            self.schedule(job_type.name, job_type.name, schedule)
        if "celery" in self.__dict__:  # the Celery app exists already: teach it the new task
            from crisper.engine.celery_app import register_task

            register_task(self.celery, job_type, self.settings, self._run_message)
        return job_type

    def rate_limit(self, name: str, rate: str, *, burst: int | None = None) -> RateLimit:
        """A rate limit shared by every job type given it: `rate_limit=crisper.rate_limit(
        "email", "50/m")`; one bucket across all workers (per `rate_key` if a type has one)."""
        limit = parse_rate(rate, burst)
        return self._declare(RateLimit(limit.limit, limit.period, limit.burst,
                                       check_limit_name(name)))

    def concurrency_limit(self, name: str, limit: int) -> ConcurrencyLimit:
        """At most `limit` jobs running at once across every job type given it
        (`concurrency=crisper.concurrency_limit("gpu", 2)`), per `concurrency_key` if set."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"concurrency limit {name!r} must be at least 1, got {limit}")
        return self._declare(ConcurrencyLimit(check_limit_name(name), limit))

    def _declare(self, limit: Any) -> Any:
        """One name, one limit: declaring it again with the same values answers the same one."""
        known = self.limits.get(limit.name)
        if known is not None and known != limit:
            raise ConfigurationError(
                f"limit {limit.name!r} is already declared as {known}; one name, one limit")
        self.limits[limit.name] = limit
        return limit

    def schedule(self, name: str, type: str, cron: str, params: dict[str, Any] | None = None, *,
                 tz: str = "UTC", queue: str | None = None, priority: int | None = None,
                 overlap: Overlap = "allow", catchup: Catchup = "none",
                 catchup_window: float = 3600.0, jitter: float = 0.0) -> CodeSchedule:
        """Declare a cron schedule in code, like Celery beat's schedule. Each scheduler syncs
        the declarations into the store when it starts: new ones added, changed ones updated,
        code schedules no longer declared removed (docs/flow-control.md)."""
        declared = CodeSchedule(name, type, cron, dict(params or {}), tz, queue, priority,
                                overlap, catchup, catchup_window, jitter)
        problem = schedule_name_problem(name)
        try:
            cron_rules.validate(cron, tz)
        except InvalidRequest as exc:
            problem = problem or str(exc)
        if overlap not in cron_rules.OVERLAPS or catchup not in cron_rules.CATCHUPS:
            problem = problem or (f"overlap must be one of {cron_rules.OVERLAPS}, "
                                  f"catchup one of {cron_rules.CATCHUPS}")
        if problem is not None:
            raise ConfigurationError(f"schedule {name!r}: {problem}")
        known = self.code_schedules.get(name)
        if known is not None and known != declared:
            raise ConfigurationError(f"schedule {name!r} is declared twice, differently")
        self.code_schedules[name] = declared
        return declared

    def declared_queues(self) -> list[str]:
        """The queues a submit may name: the job types', CRISPER_QUEUES and the default."""
        return self.registry.declared_queues(self.settings.queues)

    # -- submitting -------------------------------------------------------------------------

    def submit(self, type: str, params: dict[str, Any] | None = None, *,
               session: Session | None = None, **options: Any) -> JobHandle:
        """Submit one job of `type`; inside `session`, it exists only if that session commits."""
        from crisper.handle import JobHandle

        record = self.jobs.submit(SubmitRequest(type=type, params=params or {}, **options),
                                  session=session)
        return JobHandle(self.jobs, record)

    def submit_many(self, requests: Sequence[SubmitRequest], *, session: Session | None = None
                    ) -> list[JobHandle]:
        """Submit many jobs in one transaction (and one trip to the broker)."""
        from crisper.handle import JobHandle

        return [JobHandle(self.jobs, r) for r in self.jobs.submit_many(requests, session=session)]

    def get(self, job_id: object) -> JobHandle:
        from crisper.handle import JobHandle

        return JobHandle(self.jobs, self.jobs.get(job_id))

    # -- reading (the same functions serve the HTTP API) ------------------------------------

    def list_jobs(self, *, state: JobState | str | Iterable[JobState | str] = (),
                  type: str | Iterable[str] = (), queue: str | Iterable[str] = (),
                  tag: str | None = None, metadata: Mapping[str, str] | None = None,
                  tenant: str | None = None, created_after: datetime | None = None,
                  created_before: datetime | None = None,
                  finished_after: datetime | None = None,
                  finished_before: datetime | None = None,
                  before: object = None, limit: int = 50) -> JobPage:
        """Jobs matching every filter given, newest first, `limit` (1..500) per page; pass
        the page's `next_cursor` as `before` for the next. `tenant` None: every tenant.
        `metadata={"customer": "acme"}`: jobs holding every pair given, exactly."""
        from crisper import reads

        f = reads.job_filter(state=state, type=type, queue=queue, tag=tag, metadata=metadata,
                             tenant=tenant,
                             created_after=created_after, created_before=created_before,
                             finished_after=finished_after, finished_before=finished_before)
        return reads.list_jobs(self.jobs, f, before=before, limit=limit)

    def count_jobs(self, *, state: JobState | str | Iterable[JobState | str] = (),
                   type: str | Iterable[str] = (), queue: str | Iterable[str] = (),
                   tag: str | None = None, metadata: Mapping[str, str] | None = None,
                   tenant: str | None = None, created_after: datetime | None = None,
                   created_before: datetime | None = None,
                   finished_after: datetime | None = None,
                   finished_before: datetime | None = None) -> dict[JobState, int]:
        """How many jobs match, per state (every state, zeros included); filters as list_jobs."""
        from crisper import reads

        return reads.count_jobs(self.store, reads.job_filter(
            state=state, type=type, queue=queue, tag=tag, metadata=metadata, tenant=tenant,
            created_after=created_after, created_before=created_before,
            finished_after=finished_after, finished_before=finished_before))

    def list_workers(self) -> list[WorkerInfo]:
        """Workers seen in the last day, with their running jobs; silent ones show as lost."""
        from crisper import monitor

        return monitor.workers(self.store, self.settings)

    def queue_stats(self) -> list[QueueInfo]:
        """Per queue: jobs waiting, running, the oldest one's wait, finished in the last minute.
        (Pause and resume are on `crisper.queues`.)"""
        from crisper import monitor

        return monitor.queues(self.store, self.registry)

    # -- parts, built on first use ----------------------------------------------------------

    @cached_property
    def store(self) -> Store:
        from crisper.store import Store

        return Store(self.settings.resolved_database_url())

    @cached_property
    def celery(self) -> Celery:
        from crisper.engine.celery_app import make_celery, register_task

        app = make_celery(self.name, self.settings, self._existing_celery)
        setattr(app, PORT_ATTRIBUTE, self.celery_port)  # signatures by name find their type
        for job_type in self.registry:
            register_task(app, job_type, self.settings, self._run_message)
        return app

    def _run_message(self, job_type: JobType, job_ids: list[str], request: Any) -> None:
        """A task's body: the runner, built in the worker process on its first message."""
        self.runner.run(job_type, job_ids, request)

    @cached_property
    def dispatcher(self) -> Dispatcher:
        """The broker as the parts use it; the Celery app is built when it first sends."""
        from crisper.engine.dispatcher import Dispatcher
        from crisper.engine.wakes import Wakes

        wakes = Wakes(self.settings.resolved_redis_url, self.settings.broker_prefix)
        return Dispatcher(lambda: self.celery, wakes)

    def publish(self, dispatches: Sequence[Dispatch]) -> list[Refusal]:
        """Send wake-up messages, one per queue and job type, unless one is outstanding;
        answer the groups the broker refused (BrokerUnavailable if it is down)."""
        return self.dispatcher.publish(dispatches)

    def maintenance_loop(self) -> MaintenanceLoop:
        """The maintenance units wired to this app (`crisper scheduler` runs one)."""
        from crisper.maintenance.loop import MaintenanceLoop

        return MaintenanceLoop(self.store, self.settings, self.registry, self.dispatcher,
                               self.jobs, self.schedules)

    @cached_property
    def observer(self) -> Observer:
        """Observe mode's signal handlers for the wrapped Celery app (docs/observe.md)."""
        from crisper.engine.observe import Observer

        if self._existing_celery is None:
            raise ConfigurationError("observe mode needs a Celery app: Crisper(celery=app)")
        return Observer(self.registry, self.settings, self._existing_celery)

    @cached_property
    def jobs(self) -> JobService:
        return JobService(self.store, self.settings, self.registry, self.dispatcher, self.live,
                          lambda workflow_id, node, params: self.workflows.retry_node(
                              workflow_id, node, params))

    @cached_property
    def workflows(self) -> WorkflowService:
        from crisper.workflow_service import WorkflowService

        return WorkflowService(self.store, self.registry, self.jobs, self.dispatcher)

    def workflow(self, name: str, *, on_failure: Policy = "fail") -> Workflow:
        """A workflow builder: add nodes and edges, then `submit()` the graph in one go."""
        return self.workflows.workflow(name, on_failure)

    @cached_property
    def webhooks(self) -> WebhookService:
        from crisper.webhooks.service import WebhookService

        return WebhookService(self.store)

    @cached_property
    def batches(self) -> BatchService:
        from crisper.batches import BatchService

        return BatchService(self.store, self.jobs)

    @cached_property
    def runner(self) -> Runner:
        from crisper.engine.runner import Runner

        return Runner(self.store, self.settings, self.registry, self.flow, self.live,
                      self.dispatcher)

    @cached_property
    def live(self) -> LivePublisher:
        from crisper.live import LivePublisher

        return LivePublisher(self.settings.resolved_redis_url)

    @cached_property
    def flow(self) -> FlowGate:
        from crisper.flow.gate import FlowGate

        return FlowGate(self.store, self.settings)

    @cached_property
    def limit_view(self) -> LimitView:
        from crisper.flow.view import LimitView

        return LimitView(self.store, self.settings,
                         lambda: [(t.name, t.options.flow) for t in self.registry])

    @cached_property
    def schedules(self) -> ScheduleService:
        from crisper.maintenance.loop import periods
        from crisper.schedules import ScheduleService

        return ScheduleService(self.store, self.settings, self.registry, self.jobs,
                               self.code_schedules, lambda: periods(self.settings, self.registry))

    @cached_property
    def queues(self) -> QueueService:
        from crisper.flow.queues import QueueService

        return QueueService(self.store, lambda: {t.options.queue for t in self.registry})
