"""Log in with an API key (the login form is CSRF-guarded too), and log out."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from crisper.dashboard import session as sessions
from crisper.dashboard.render import base_of, render
from crisper.errors import AccessDenied

router = APIRouter()


def _login_page(request: Request, status: int = 200, error: str | None = None) -> Response:
    token = secrets.token_urlsafe(32)
    response = render(request, "login.html", None, status=status, login_csrf=token, error=error)
    sessions.set_cookie(response, request, sessions.LOGIN_COOKIE, token)
    return response


@router.get("/login")
def login_form(request: Request) -> Response:
    return _login_page(request)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    expected = request.cookies.get(sessions.LOGIN_COOKIE, "")
    given = form.get("csrf")
    if not expected or not sessions.tokens_match(expected, given if isinstance(given, str)
                                                 else None):
        raise sessions.CsrfRejected()
    key = form.get("key")
    key = key.strip() if isinstance(key, str) else ""
    try:
        who = await run_in_threadpool(request.app.state.keys.authenticate, key)
    except AccessDenied as exc:
        return _login_page(request, 401, str(exc))
    if "read" not in who.scopes:
        return _login_page(request, 403, "this key lacks the 'read' scope the dashboard needs")
    base = base_of(request)
    response = RedirectResponse(f"{base}/", status_code=303)
    sessions.set_cookie(response, request, sessions.SESSION_COOKIE,
                        sessions.new_session(key).encode())
    sessions.clear_cookie(response, request, sessions.LOGIN_COOKIE)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    current = sessions.current(request)
    await sessions.check_csrf(request, current.csrf)
    base = base_of(request)
    response = RedirectResponse(f"{base}/login", status_code=303)
    sessions.clear_cookie(response, request, sessions.SESSION_COOKIE)
    return response
