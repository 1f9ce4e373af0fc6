"""The schedule service: cron schedules kept in the database, managed from Python, CLI and API."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from crisper import cron
from crisper.cron import Catchup, Overlap
from crisper.errors import InvalidRequest, ScheduleNotFound, UnknownQueue
from crisper.names import schedule_name_problem, unknown_queue_problem
from crisper.priorities import priority_problem
from crisper.records import JobRecord
from crisper.registry import Registry
from crisper.service import DEFAULT_TENANT, JobService, SubmitRequest
from crisper.settings import Settings
from crisper.store import Store, utcnow
from crisper.store import schedules as schedule_sql
from crisper.store.schedules import ScheduleRecord


@dataclass(frozen=True)
class CodeSchedule:
    """A schedule declared in the app's code (`crisper.schedule()`, `@job(schedule=)`)."""

    name: str
    type: str
    cron: str
    params: dict[str, Any] = field(default_factory=dict)
    timezone: str = "UTC"
    queue: str | None = None
    priority: int | None = None
    overlap: Overlap = "allow"
    catchup: Catchup = "none"
    catchup_window: float = 3600.0
    jitter: float = 0.0


@dataclass
class SyncReport:
    """What a sync did, by schedule name; `conflicts`: names already used from the CLI/API."""

    added: list[str]
    changed: list[str]
    removed: list[str]
    conflicts: list[str]


@dataclass(frozen=True)
class BuiltinSchedule:
    """A maintenance unit shown beside the user's schedules: what it does, how often, last run."""

    name: str
    every: float
    description: str
    last_run_at: datetime | None
    last_count: int | None
    last_by: str | None


class ScheduleService:
    """Create, list, change and fire schedules. The cron unit fires them on every scheduler."""

    def __init__(self, store: Store, settings: Settings, registry: Registry, jobs: JobService,
                 code_schedules: Mapping[str, CodeSchedule],
                 maintenance: Callable[[], list[tuple[str, float]]]) -> None:
        """`code_schedules`: the app's declarations (it adds to them); `maintenance`: the
        maintenance units' names and periods, shown beside the schedules."""
        self.store = store
        self.settings = settings
        self.registry = registry
        self.jobs = jobs
        self.code_schedules = code_schedules
        self.maintenance = maintenance

    def add(self, name: str, type: str, cron_expr: str, *, params: dict[str, Any] | None = None,
            timezone: str = "UTC", queue: str | None = None, priority: int | None = None,
            tenant: str = DEFAULT_TENANT, enabled: bool = True, overlap: cron.Overlap = "allow",
            catchup: cron.Catchup = "none", catchup_window: float = 3600.0,
            jitter: float = 0.0, replace: bool = False) -> ScheduleRecord:
        """Store a schedule (validated now, not at its first fire); `replace` to change one.

        A schedule declared in code is changed in the code, not here (the scheduler would
        put it back at its next start)."""
        problem = schedule_name_problem(name)
        if problem is not None:
            raise InvalidRequest("name", problem)
        at = utcnow()
        values = self._values(CodeSchedule(name, type, cron_expr, params or {}, timezone, queue,
                                           priority, overlap, catchup, catchup_window, jitter))
        values.update(tenant=tenant, enabled=enabled, updated_at=at,
                      next_fire_at=cron.next_fire(cron_expr, timezone, at) if enabled else None)
        try:
            with self.store.transaction() as session:
                _refuse_code(schedule_sql.get(session, name, tenant), "replace")
                if not (replace and schedule_sql.replace(session, name, tenant, values)):
                    schedule_sql.create(session, {"name": name, "created_at": at, **values})
        except IntegrityError:
            raise InvalidRequest(
                "name", f"schedule {name!r} exists already; replace it (replace=True, "
                "--replace) or remove it first") from None
        return self.get(name, tenant)

    def _values(self, d: CodeSchedule) -> dict[str, Any]:
        """A schedule's stored definition, every part validated (InvalidRequest names it)."""
        job_type = self.registry.get(d.type)
        clean = job_type.validate(d.params)
        known = self.registry.declared_queues(self.settings.queues)
        problem = unknown_queue_problem(d.queue or job_type.options.queue, known)
        if problem is not None:
            raise UnknownQueue("queue", problem, known)
        cron.validate(d.cron, d.timezone)
        if d.overlap not in cron.OVERLAPS:
            raise InvalidRequest("overlap", f"must be one of {', '.join(cron.OVERLAPS)}")
        if d.catchup not in cron.CATCHUPS:
            raise InvalidRequest("catchup", f"must be one of {', '.join(cron.CATCHUPS)}")
        if d.jitter < 0 or d.catchup_window <= 0:
            raise InvalidRequest("jitter", "jitter must be >= 0 and catchup_window > 0 (seconds)")
        if d.priority is not None and (problem := priority_problem(d.priority)) is not None:
            raise InvalidRequest("priority", problem)
        return {
            "type": job_type.name, "params": clean, "queue": d.queue, "priority": d.priority,
            "cron": d.cron, "timezone": d.timezone, "overlap": d.overlap, "catchup": d.catchup,
            "catchup_window": float(d.catchup_window), "jitter": float(d.jitter),
        }

    def sync_code(self) -> SyncReport:
        """Make the stored code-declared schedules match `crisper.schedule()` declarations.

        Adds the new, changes the changed (a new cron or time zone restarts the fire times),
        removes those the code no longer declares. A schedule made from the CLI or API with
        a declared name is left alone and reported. Enabled/disabled, fire counts and the
        next fire time of an unchanged schedule are kept. Several schedulers starting at once
        serialize on the row locks; one that loses the insert race syncs again.
        """
        try:
            return self._sync_code()
        except IntegrityError:  # another scheduler inserted the same new schedule first
            return self._sync_code()

    def _sync_code(self) -> SyncReport:
        declared = {d.name: (d, self._values(d)) for d in self.code_schedules.values()}
        report = SyncReport([], [], [], [])
        at = utcnow()
        with self.store.transaction() as session:
            stored = {s.name: s for s in schedule_sql.from_code(session, DEFAULT_TENANT)}
            for name in sorted(set(stored) - set(declared)):
                schedule_sql.remove(session, name, DEFAULT_TENANT)
                report.removed.append(name)
            for name, (_, values) in sorted(declared.items()):
                old = stored.get(name) or schedule_sql.get(session, name, DEFAULT_TENANT)
                if old is None:
                    schedule_sql.create(session, {
                        "name": name, "tenant": DEFAULT_TENANT, "source": "code",
                        "created_at": at, "updated_at": at, "enabled": True,
                        "next_fire_at": cron.next_fire(values["cron"], values["timezone"], at),
                        **values})
                    report.added.append(name)
                elif old.source != "code":
                    report.conflicts.append(name)
                elif any(getattr(old, k) != v for k, v in values.items()):
                    update = {**values, "updated_at": at}
                    if old.enabled and (old.cron, old.timezone) != (values["cron"],
                                                                      values["timezone"]):
                        update["next_fire_at"] = cron.next_fire(values["cron"],
                                                                values["timezone"], at)
                    schedule_sql.replace(session, name, DEFAULT_TENANT, update)
                    report.changed.append(name)
        return report

    def get(self, name: str, tenant: str = DEFAULT_TENANT) -> ScheduleRecord:
        """The tenant's schedule `name` (names are per tenant: another's is not found)."""
        with self.store.read() as session:
            record = schedule_sql.get(session, name, tenant)
        if record is None:
            raise ScheduleNotFound(name)
        return record

    def list_schedules(self, tenant: str | None = None) -> list[ScheduleRecord]:
        with self.store.read() as session:
            return schedule_sql.list_schedules(session, tenant)

    def remove(self, name: str, tenant: str = DEFAULT_TENANT) -> None:
        """Delete the schedule; the jobs it made stay, still naming it."""
        with self.store.transaction() as session:
            _refuse_code(schedule_sql.get(session, name, tenant), "remove")
            if not schedule_sql.remove(session, name, tenant):
                raise ScheduleNotFound(name)

    def enable(self, name: str, tenant: str = DEFAULT_TENANT) -> ScheduleRecord:
        """Turn on; the next fire is counted from now (the time it was off is not caught up)."""
        record = self.get(name, tenant)
        at = utcnow()
        return self._set(name, tenant, enabled=True, updated_at=at,
                         next_fire_at=cron.next_fire(record.cron, record.timezone, at))

    def disable(self, name: str, tenant: str = DEFAULT_TENANT) -> ScheduleRecord:
        return self._set(name, tenant, enabled=False, next_fire_at=None, updated_at=utcnow())

    def _set(self, name: str, tenant: str, **values: Any) -> ScheduleRecord:
        with self.store.transaction() as session:
            if not schedule_sql.replace(session, name, tenant, values):
                raise ScheduleNotFound(name)
        return self.get(name, tenant)

    def run_now(self, name: str, tenant: str = DEFAULT_TENANT) -> JobRecord:
        """Fire once, now, outside the cron times (the overlap policy is not applied)."""
        at = utcnow()
        with self.store.transaction() as session:
            s = schedule_sql.get(session, name, tenant, for_update=True)
            if s is None:
                raise ScheduleNotFound(name)
            job = self.jobs.submit_many([request_for(s, at, at)], session=session)[0]
            schedule_sql.record_fires(session, name, tenant, 1, 0, at, job.id, None)
        return job

    def next_fires(self, record: ScheduleRecord, count: int = 5) -> list[datetime]:
        """The coming fire times (UTC); none while the schedule is disabled."""
        if not record.enabled or record.next_fire_at is None:
            return []
        first = record.next_fire_at
        return [first, *cron.next_fires(record.cron, record.timezone, first, count - 1)]

    def builtins(self) -> list[BuiltinSchedule]:
        """Maintenance that every scheduler runs, with the last run any of them recorded."""
        with self.store.read() as session:
            runs = schedule_sql.maintenance(session)
        out = []
        for name, every in self.maintenance():
            run = runs.get(name)
            out.append(BuiltinSchedule(
                f"crisper.{name}", every, _DESCRIPTIONS.get(name, ""),
                run.last_run_at if run else None, run.last_count if run else None,
                run.last_by if run else None))
        return out


def _refuse_code(record: ScheduleRecord | None, action: str) -> None:
    if record is not None and record.source == "code":
        raise InvalidRequest(
            "name", f"schedule {record.name!r} is declared in the app's code; {action} it there "
            "(the scheduler syncs code schedules at start); enable, disable and run-now work")


def request_for(s: ScheduleRecord, fire: datetime, run_at: datetime | None) -> SubmitRequest:
    """The job one fire of `s` makes, recorded with the schedule and the fire time."""
    return SubmitRequest(type=s.type, params=dict(s.params), queue=s.queue, priority=s.priority,
                         tenant=s.tenant, run_at=run_at, schedule_name=s.name, fire_time=fire,
                         tags=[f"schedule:{s.name}"])


_DESCRIPTIONS = {
    "timers": "scheduled and retrying jobs whose time has come are queued",
    "relay": "queued jobs get their wake-up message (paused queues wait)",
    "lifeline": "running jobs whose lease expired are queued again, unspent (lease rescue)",
    "canceller": "jobs that ignore a cancel past the grace period are stopped",
    "redispatch": "wake-ups lost by the broker are sent again",
    "pruner": "finished jobs older than the retention period are deleted (retention)",
    "cron": "due schedules fire, one job per fire",
    "observed": "observed Celery tasks whose worker stopped heartbeating are marked lost",
    "deliverer": "due webhook deliveries are sent, signed (and batch callback jobs submitted)",
    "workflows": "ended workflows are noted once and workflow.finished written to the outbox",
}
