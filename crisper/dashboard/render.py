"""Render a dashboard page with what every page needs: base path, viewer, CSRF token, states."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from crisper.dashboard.session import Viewer
from crisper.states import JobState


def base_of(request: Request) -> str:
    """Where the dashboard is mounted (e.g. /dashboard): links are built from it."""
    return str(request.scope.get("root_path", ""))


def render(request: Request, template: str, viewer: Viewer | None, status: int = 200,
           **context: Any) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, template, status_code=status, context={
        "base": base_of(request), "viewer": viewer, "csrf": viewer.csrf if viewer else "",
        "states": [s.value for s in JobState], **context})
