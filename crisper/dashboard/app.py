"""The dashboard's ASGI app: templates, static files, routes, security headers, error pages.

Mounted by the API app factory under /dashboard; it reads and acts through the same service
layer as the HTTP API, as the logged-in API key's tenant and scopes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from crisper.app import Crisper
from crisper.dashboard import (
    fmt,
    routes_auth,
    routes_batches,
    routes_jobs,
    routes_pages,
    routes_submit,
    routes_webhooks,
    routes_workflows,
)
from crisper.dashboard.render import render
from crisper.dashboard.session import CsrfRejected, LoginRequired
from crisper.errors import (
    AccessDenied,
    BatchNotFound,
    CrisperError,
    JobNotFound,
    WebhookNotFound,
    WorkflowNotFound,
)
from crisper.keys import KeyService

HERE = Path(__file__).parent
# Scripts and styles come from our own static files only; nothing inline, nothing remote.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "object-src 'none'")


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.url.path.startswith(f"{request.scope.get('root_path', '')}/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response


def _login_required(request: Request, exc: Exception) -> Response:
    base = str(request.scope.get("root_path", ""))
    if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
        return RedirectResponse(f"{base}/login", status_code=303)
    return Response("log in first", status_code=401, media_type="text/plain")


def _error_page(status: int, title: str) -> Any:
    def handler(request: Request, exc: Exception) -> Response:
        return render(request, "error.html", None, status=status, title=title,
                      message=str(exc) or title)
    return handler


def create_dashboard(crisper: Crisper, keys: KeyService | None = None) -> FastAPI:
    """The dashboard for `crisper`'s jobs; mount it inside the API app."""
    app = FastAPI(title="Crisper dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.crisper = crisper
    app.state.keys = keys or KeyService(crisper.store)
    # Autoescape everywhere: every value a job carries (params, errors, logs) is user data.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=True)
    env.filters.update(fmt.FILTERS)
    templates = Jinja2Templates(env=env)
    app.state.templates = templates
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in (routes_auth, routes_pages, routes_jobs, routes_submit, routes_workflows,
                   routes_batches, routes_webhooks):
        app.include_router(module.router)
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(CsrfRejected, _error_page(
        403, "This request lacks the page's security token; reload the page and try again"))
    app.add_exception_handler(AccessDenied, _error_page(403, "Not allowed"))
    for missing in (JobNotFound, WorkflowNotFound, BatchNotFound, WebhookNotFound):
        app.add_exception_handler(missing, _error_page(404, "Not found"))
    app.add_exception_handler(CrisperError, _error_page(400, "Cannot do that"))
    app.add_middleware(SecurityHeaders)
    return app
