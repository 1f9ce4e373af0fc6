"""Dashboard sessions: an API key held in an HttpOnly cookie, and a per-session CSRF token.

The cookie carries the key the user logged in with, so the key is checked (and a revoked
key refused) on every request, with no server-side session table and no signing secret to
share between API processes. It is HttpOnly (scripts cannot read it), SameSite=Strict (other
sites cannot make the browser send it), Secure over TLS, and lives for the browser session
only. The CSRF token is random per login, kept in the same cookie, and must come back in
each state-changing request (a form field or the X-CSRF-Token header).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from crisper.errors import AccessDenied
from crisper.keys import Principal

SESSION_COOKIE = "crisper_session"
LOGIN_COOKIE = "crisper_login_csrf"  # guards the login form itself (double submit)
MAX_AGE_SECONDS = 12 * 3600
CSRF_HEADER = "x-csrf-token"


class LoginRequired(Exception):
    """No valid session: the browser is sent to the login page."""


class CsrfRejected(Exception):
    """A state-changing request without the session's CSRF token."""


@dataclass(frozen=True)
class SessionData:
    key: str
    csrf: str
    issued_at: float

    def encode(self) -> str:
        raw = json.dumps({"k": self.key, "c": self.csrf, "t": self.issued_at}).encode()
        return base64.urlsafe_b64encode(raw).decode()

    @classmethod
    def decode(cls, value: str | None, now: float) -> SessionData | None:
        """The session in a cookie value, or None if it is unreadable or too old."""
        if not value:
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(value.encode()))
            session = cls(str(data["k"]), str(data["c"]), float(data["t"]))
        except (ValueError, KeyError, TypeError, binascii.Error, RecursionError):
            return None
        if not session.key or len(session.csrf) < 16:
            return None
        if not 0 <= now - session.issued_at <= MAX_AGE_SECONDS:
            return None
        return session


@dataclass(frozen=True)
class Viewer:
    """The logged-in user: the key's principal, its CSRF token, and what it may do."""

    principal: Principal
    csrf: str

    @property
    def tenant(self) -> str:
        return self.principal.tenant

    @property
    def can_read(self) -> bool:
        return "read" in self.principal.scopes

    @property
    def can_write(self) -> bool:
        return "write" in self.principal.scopes

    @property
    def can_admin(self) -> bool:
        return "admin" in self.principal.scopes


def new_session(key: str) -> SessionData:
    return SessionData(key, secrets.token_urlsafe(32), time.time())


def tokens_match(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


def is_https(request: Request) -> bool:
    """TLS as the browser sees it: the URL scheme, or a proxy's X-Forwarded-Proto."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def cookie_path(request: Request) -> str:
    return str(request.scope.get("root_path", "")) or "/"


def set_cookie(response: Response, request: Request, name: str, value: str) -> None:
    response.set_cookie(name, value, path=cookie_path(request), httponly=True,
                        samesite="strict", secure=is_https(request))


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(name, path=cookie_path(request), httponly=True, samesite="strict",
                           secure=is_https(request))


def current(request: Request) -> SessionData:
    session = SessionData.decode(request.cookies.get(SESSION_COOKIE), time.time())
    if session is None:
        raise LoginRequired()
    return session


def viewer(request: Request) -> Viewer:
    """The logged-in user, or LoginRequired when there is no session or its key was revoked."""
    session = current(request)
    try:
        principal = request.app.state.keys.authenticate(session.key)
    except AccessDenied:
        raise LoginRequired() from None
    return Viewer(principal, session.csrf)


async def check_csrf(request: Request, expected: str) -> None:
    """Refuse a state-changing request whose token (form field or header) does not match."""
    given = request.headers.get(CSRF_HEADER)
    if not given and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get("csrf")
        given = value if isinstance(value, str) else None
    if not tokens_match(expected, given):
        raise CsrfRejected()
    origin = request.headers.get("origin")
    if origin and origin != "null" and origin != _own_origin(request):
        raise CsrfRejected()


def _own_origin(request: Request) -> str:
    scheme = "https" if is_https(request) else request.url.scheme
    return f"{scheme}://{request.headers.get('host', request.url.netloc)}"
