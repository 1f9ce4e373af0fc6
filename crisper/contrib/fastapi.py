"""Crisper inside an existing FastAPI app: its API and dashboard under a prefix, and a submit
bound to the request's own SQLAlchemy session (Session or AsyncSession).

    crisper_api = mount(app, crisper, prefix="/jobs")       # /jobs/v1/..., /jobs/dashboard/
    Submit = submitter(crisper, get_session)                 # get_session: the app's dependency

    @app.post("/orders")
    async def order(submit: Annotated[AsyncSubmitter, Depends(Submit)], ...):
        ...
        job = await submit("ship_order", {"order_id": order.id})
        await session.commit()        # the job exists if and only if this commits

See docs/integrations.md. (No `from __future__ import annotations` here: FastAPI reads the
dependency's annotations at run time, and they name a local.)
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from crisper.app import Crisper
from crisper.handle import JobHandle
from crisper.registry import JobType
from crisper.workflow_service import WorkflowView
from crisper.workflows import Workflow


def mount(app: FastAPI, crisper: Crisper, prefix: str = "/crisper") -> FastAPI:
    """Serve Crisper's /v1 API, dashboard, /healthz and /metrics under `prefix` of `app`.

    Crisper's app is mounted as a sub-application: the host's routes and middleware stay as
    they are, and Crisper's routes keep their own API-key auth. Returns the mounted app.
    """
    from crisper.api.app import create_app

    crisper_api = create_app(crisper)
    app.mount(prefix.rstrip("/"), crisper_api, name="crisper")
    return crisper_api


def _type_name(job_type: JobType | str) -> str:
    return job_type.name if isinstance(job_type, JobType) else job_type


class Submitter:
    """Submits jobs in a request's Session: they exist if and only if that session commits."""

    def __init__(self, crisper: Crisper, session: Session) -> None:
        self.crisper = crisper
        self.session = session

    def __call__(self, job_type: JobType | str, params: dict[str, Any] | None = None,
                 **options: Any) -> JobHandle:
        return self.crisper.submit(_type_name(job_type), params, session=self.session,
                                   **options)

    def workflow(self, wf: Workflow) -> WorkflowView:
        """Store a whole workflow in the request's session (it exists if that commits)."""
        return wf.submit(session=self.session)


class AsyncSubmitter:
    """Submits jobs in a request's AsyncSession: they exist if and only if it commits.

    The insert runs on the session's own connection (through `run_sync`); the wake-up after
    the commit is one publish and one UPDATE, made synchronously (a few milliseconds).
    """

    def __init__(self, crisper: Crisper, session: AsyncSession) -> None:
        self.crisper = crisper
        self.session = session

    async def __call__(self, job_type: JobType | str, params: dict[str, Any] | None = None,
                       **options: Any) -> JobHandle:
        name = _type_name(job_type)
        return await self.session.run_sync(
            lambda sync: self.crisper.submit(name, params, session=sync, **options))

    async def workflow(self, wf: Workflow) -> WorkflowView:
        """Store a whole workflow in the request's AsyncSession (it exists if that commits)."""
        return await self.session.run_sync(lambda sync: wf.submit(session=sync))


def submitter(crisper: Crisper, get_session: Callable[..., Any]
              ) -> Callable[..., Submitter | AsyncSubmitter]:
    """A dependency giving route handlers a submit bound to the session `get_session` yields
    (the same session the handler gets: FastAPI caches a dependency within a request)."""

    def dependency(session: Annotated[Any, Depends(get_session)]) -> Submitter | AsyncSubmitter:
        if isinstance(session, AsyncSession):
            return AsyncSubmitter(crisper, session)
        return Submitter(crisper, session)

    return dependency
