"""/v1/schedules (cron schedules with next fire times) and /v1/queues/{name}/pause|resume."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from crisper.api.auth import Admin, AppDep, Reader, Writer
from crisper.api.problems import responses
from crisper.bodies import QueueName as QueueField
from crisper.names import QUEUE_PATTERN, SCHEDULE_PATTERN
from crisper.priorities import PRIORITY_MAX
from crisper.schedules import ScheduleService
from crisper.store.schedules import ScheduleRecord

router = APIRouter(prefix="/v1", tags=["schedules"], responses=responses(401, 403, 500))
NewName = Annotated[str, Path(max_length=90, pattern=f"^{SCHEDULE_PATTERN.pattern}$",
                              description="see docs/api.md for the schedule name rule")]
QueueName = Annotated[str, Path(max_length=64, pattern=f"^{QUEUE_PATTERN.pattern}$",
                                description="see docs/flow-control.md for the queue name rule")]


class ScheduleIn(BaseModel):
    type: str
    cron: str = Field(description="five fields, or six with seconds first")
    params: dict[str, Any] = Field(default_factory=dict)
    timezone: str = "UTC"
    queue: QueueField | None = None
    priority: int | None = Field(None, ge=0, le=PRIORITY_MAX)
    enabled: bool = True
    overlap: Literal["allow", "skip", "cancel"] = "allow"
    catchup: Literal["none", "all"] = "none"
    catchup_window: float = Field(3600.0, gt=0)
    jitter: float = Field(0.0, ge=0)


class ScheduleOut(BaseModel):
    name: str
    type: str
    cron: str
    timezone: str
    params: dict[str, Any]
    queue: str | None
    priority: int | None
    tenant: str
    enabled: bool
    overlap: str
    catchup: str
    catchup_window: float
    jitter: float
    next_fire_at: datetime | None
    next_fires: list[datetime]
    last_fire_at: datetime | None
    last_job_id: str | None
    last_error: str | None
    fires: int
    skipped: int
    source: str = Field(description="code: declared in the app, synced by the scheduler at "
                                    "start (change it there); api: made from the CLI, API or "
                                    "Python service")


class QueueState(BaseModel):
    name: str
    paused: bool
    paused_at: datetime | None
    queued: int
    running: int


def _out(svc: ScheduleService, s: ScheduleRecord) -> ScheduleOut:
    data = asdict(s)
    data["last_job_id"] = str(s.last_job_id) if s.last_job_id else None
    return ScheduleOut(**data, next_fires=svc.next_fires(s, 5))


@router.get("/schedules", response_model=list[ScheduleOut])
def list_schedules(crisper: AppDep, who: Reader) -> list[ScheduleOut]:
    """The tenant's schedules, each with its next five fire times (UTC)."""
    svc = crisper.schedules
    return [_out(svc, s) for s in svc.list_schedules(who.tenant)]


@router.get("/schedules/{name}", response_model=ScheduleOut, responses=responses(404))
def get_schedule(name: str, crisper: AppDep, who: Reader) -> ScheduleOut:
    """The tenant's schedule (another tenant's of the same name is as absent as none)."""
    return _out(crisper.schedules, crisper.schedules.get(name, who.tenant))


@router.put("/schedules/{name}", response_model=ScheduleOut, status_code=201,
            responses=responses(400, 413, 422))
def put_schedule(name: NewName, body: ScheduleIn, crisper: AppDep, who: Writer) -> ScheduleOut:
    """Create or replace the schedule `name`."""
    svc = crisper.schedules
    s = svc.add(name, body.type, body.cron, params=body.params, timezone=body.timezone,
                queue=body.queue, priority=body.priority, tenant=who.tenant,
                enabled=body.enabled, overlap=body.overlap, catchup=body.catchup,
                catchup_window=body.catchup_window, jitter=body.jitter, replace=True)
    return _out(svc, s)


@router.delete("/schedules/{name}", status_code=204, responses=responses(404))
def delete_schedule(name: str, crisper: AppDep, who: Writer) -> Response:
    crisper.schedules.remove(name, who.tenant)
    return Response(status_code=204)


@router.post("/schedules/{name}/run-now", status_code=202, responses=responses(404))
def run_now(name: str, crisper: AppDep, who: Writer) -> dict[str, str]:
    """Fire once, now; answers the job's id."""
    job = crisper.schedules.run_now(name, who.tenant)
    return {"id": str(job.id), "state": job.state.value}


@router.post("/schedules/{name}/{action}", response_model=ScheduleOut,
             responses=responses(404, 422))
def schedule_action(name: str, action: Literal["enable", "disable"], crisper: AppDep,
                    who: Writer) -> ScheduleOut:
    svc = crisper.schedules
    return _out(svc, svc.enable(name, who.tenant) if action == "enable"
                else svc.disable(name, who.tenant))


@router.post("/queues/{name}/{action}", response_model=QueueState, tags=["queues"],
             responses=responses(422))
def queue_action(name: QueueName, action: Literal["pause", "resume"], crisper: AppDep,
                 who: Admin) -> QueueState:
    """Pause (durable; running jobs finish) or resume a queue."""
    q = crisper.queues.pause(name) if action == "pause" else crisper.queues.resume(name)
    return QueueState(name=q.name, paused=q.paused, paused_at=q.paused_at, queued=q.queued,
                      running=q.running)
