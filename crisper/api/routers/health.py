"""/healthz, /readyz and /metrics: for load balancers, orchestrators and Prometheus."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response

from crisper import monitor
from crisper.api.auth import AppDep, get_keys
from crisper.api.metrics import CONTENT_TYPE, render
from crisper.api.problems import problem, responses
from crisper.api.schemas import Health
from crisper.keys import KeyService

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process answers (it checks nothing else)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses=responses(503))
def readyz(request: Request, crisper: AppDep) -> Response | Health:
    """Ready when the database and the broker are both reachable; 503 names the one that is not."""
    problems = monitor.readiness(crisper.store, crisper.dispatcher)
    checks = {name: why or "ok" for name, why in problems.items()}
    down = [name for name, why in problems.items() if why]
    if down:
        detail = "not ready: " + "; ".join(f"{name}: {problems[name]}" for name in down)
        return problem(503, detail, "not-ready", request.url.path, checks=checks)
    return Health(status="ready", checks=checks)


@router.get("/metrics", response_class=Response, responses={
    200: {"description": "Prometheus text format", "content": {CONTENT_TYPE: {}}},
    **responses(401, 403, 422, 500, 503)})
def metrics(request: Request, crisper: AppDep, keys: Annotated[KeyService, Depends(get_keys)],
            authorization: Annotated[str | None, Header(max_length=500)] = None) -> Response:
    """Job, queue and lease-rescue figures read from the store (see docs/api.md).

    Open by default, as scrapers expect; CRISPER_METRICS_REQUIRE_KEY=true asks for an admin key.
    """
    if crisper.settings.metrics_require_key:
        scheme, _, secret = (authorization or "").partition(" ")
        keys.authenticate(secret.strip() if scheme.lower() == "bearer" else None).require("admin")
    return Response(render(request.app.state.metrics), media_type=CONTENT_TYPE)
