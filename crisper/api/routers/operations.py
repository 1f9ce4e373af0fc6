"""/v1/queues, /v1/workers, /v1/limits: what operators look at (admin scope: spans tenants)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from crisper import monitor
from crisper.api.auth import Admin, AppDep
from crisper.api.problems import responses
from crisper.api.schemas import LimitInfo, QueueInfo, WorkerInfo

router = APIRouter(prefix="/v1", tags=["operations"], responses=responses(401, 403, 500, 503))


@router.get("/queues", response_model=list[QueueInfo])
def queues(crisper: AppDep, who: Admin) -> list[QueueInfo]:
    """Each queue: jobs waiting, running, the oldest one's wait, and jobs finished last minute."""
    return [QueueInfo(**asdict(q)) for q in monitor.queues(crisper.store, crisper.registry)]


@router.get("/workers", response_model=list[WorkerInfo])
def workers(crisper: AppDep, who: Admin) -> list[WorkerInfo]:
    """Workers seen in the last day, with their running jobs; silent ones are shown as lost."""
    return [WorkerInfo(**asdict(w)) for w in monitor.workers(crisper.store, crisper.settings)]


@router.get("/limits", response_model=list[LimitInfo])
def limits(crisper: AppDep, who: Admin) -> list[LimitInfo]:
    """Each rate and concurrency limit: tokens left, jobs running, jobs deferred by it."""
    return [LimitInfo(**asdict(s)) for s in crisper.limit_view.states()]
