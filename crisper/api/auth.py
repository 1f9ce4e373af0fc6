"""Who is calling: the Bearer API key, its tenant and its scopes, as FastAPI dependencies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from crisper.app import Crisper
from crisper.keys import KeyService, Principal

bearer = HTTPBearer(auto_error=False, description="an API key from `crisper keys create`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def get_crisper(request: Request) -> Crisper:
    crisper: Crisper = request.app.state.crisper
    return crisper


def get_keys(request: Request) -> KeyService:
    keys: KeyService = request.app.state.keys
    return keys


def principal(keys: Annotated[KeyService, Depends(get_keys)], credentials: Credentials
              ) -> Principal:
    return keys.authenticate(credentials.credentials if credentials else None)


def scope(name: str) -> Callable[..., Principal]:
    """A dependency that answers the caller, or 401/403 when the key is missing or too weak."""

    def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        who.require(name)
        return who

    check.__name__ = f"require_{name}"
    return check


AppDep = Annotated[Crisper, Depends(get_crisper)]
Reader = Annotated[Principal, Depends(scope("read"))]
Writer = Annotated[Principal, Depends(scope("write"))]
Admin = Annotated[Principal, Depends(scope("admin"))]
