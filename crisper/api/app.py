"""The FastAPI app factory: routers, auth, problem+json errors, body limit, OpenAPI."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi_offline import FastAPIOffline

from crisper.api import openapi, problems
from crisper.api.auth import KeyCache
from crisper.api.limits import BodyLimit
from crisper.api.metrics import registry_for
from crisper.api.routers import (
    batches,
    catalog,
    health,
    jobs,
    operations,
    schedules,
    webhooks,
    workflows,
)
from crisper.app import Crisper
from crisper.keys import KeyService

# Every router the API serves; a new resource is one more line here.
ROUTERS: list[APIRouter] = [
    health.router,
    jobs.router,
    workflows.router,
    catalog.router,
    operations.router,
    schedules.router,
    webhooks.router,
    batches.router,
]

DOCS_ASSETS = "/docs/assets"
DESCRIPTION = """Crisper's HTTP API: submit jobs, follow them, steer them.

Authenticate with `Authorization: Bearer <key>` (`crisper keys create`). Keys carry scopes
(read, write, admin) and belong to a tenant, which sees only its own jobs. Errors are
RFC 9457 `application/problem+json` documents with a sentence in `detail`.
"""


def _to_dashboard(request: Request) -> RedirectResponse:
    """People who open the server's root want the dashboard (under the mount prefix, if any)."""
    return RedirectResponse(f"{request.scope.get('root_path', '')}/dashboard/", status_code=307)


def create_app(crisper: Crisper) -> FastAPI:
    """An ASGI app serving `crisper`'s jobs; nothing connects until the first request."""
    # /docs and /redoc with their scripts served from here (a package's copy), not a CDN:
    # the pages work on a machine without internet.
    api = FastAPIOffline(title="Crisper", version="1", description=DESCRIPTION,
                         docs_url="/docs", redoc_url="/redoc", openapi_url="/openapi.json",
                         static_url=DOCS_ASSETS)
    api.state.crisper = crisper
    api.state.keys = KeyService(crisper.store)
    api.state.key_cache = KeyCache(api.state.keys, crisper.settings.api_key_cache_seconds)
    api.state.group_commit = None  # built on the first submit (crisper.api.routers.jobs)
    api.state.metrics = registry_for(crisper)
    problems.install(api)
    for router in ROUTERS:
        api.include_router(router)
    from crisper.dashboard import create_dashboard  # it imports the API's stream: not at top

    api.mount("/dashboard", create_dashboard(crisper, api.state.keys), name="dashboard")
    api.add_api_route("/", _to_dashboard, include_in_schema=False)
    api.add_middleware(BodyLimit, max_bytes=crisper.settings.api_max_body_bytes)
    openapi.install(api, crisper)
    return api
