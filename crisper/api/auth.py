"""Who is calling: the Bearer API key, its tenant and its scopes, as FastAPI dependencies.

A key verified against the database is trusted by this process for
`settings.api_key_cache_seconds` (2 s by default) before it is looked up again, so that a busy
client costs no database round trip per request. That is the bound on revocation: a key
revoked elsewhere is refused by every server process within it. Only keys that passed are
remembered; an unknown or revoked key is looked up each time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from crisper.app import Crisper
from crisper.keys import KeyService, Principal, hash_secret

bearer = HTTPBearer(auto_error=False, description="an API key from `crisper keys create`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
MAX_REMEMBERED = 10_000  # distinct keys per process; past it the memory starts afresh


class KeyCache:
    """Principals of recently verified keys, by the secret's hash, each for `seconds`."""

    def __init__(self, keys: KeyService, seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.keys = keys
        self.seconds = seconds
        self._clock = clock
        self._known: dict[str, tuple[float, Principal]] = {}
        self._lookups: dict[str, asyncio.Future[Principal]] = {}

    def remembered(self, secret: str) -> Principal | None:
        entry = self._known.get(hash_secret(secret))
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    def remember(self, secret: str, who: Principal) -> None:
        if self.seconds <= 0:
            return
        if len(self._known) >= MAX_REMEMBERED:
            self._known.clear()
        self._known[hash_secret(secret)] = (self._clock() + self.seconds, who)

    async def authenticate(self, secret: str | None) -> Principal:
        """The caller, from memory when verified recently, else from the database: one lookup
        per key at a time, which the requests arriving meanwhile share."""
        if not secret:
            return await run_in_threadpool(self.keys.authenticate, secret)
        if (who := self.remembered(secret)) is not None:
            return who
        digest = hash_secret(secret)
        lookup = self._lookups.get(digest)
        if lookup is None:
            lookup = self._lookups[digest] = asyncio.ensure_future(self._look_up(secret))
            lookup.add_done_callback(lambda _: self._lookups.pop(digest, None))
        return await asyncio.shield(lookup)

    async def _look_up(self, secret: str) -> Principal:
        who = await run_in_threadpool(self.keys.authenticate, secret)
        self.remember(secret, who)
        return who


async def get_crisper(request: Request) -> Crisper:
    crisper: Crisper = request.app.state.crisper
    return crisper


async def get_keys(request: Request) -> KeyService:
    keys: KeyService = request.app.state.keys
    return keys


async def principal(request: Request, credentials: Credentials) -> Principal:
    cache: KeyCache = request.app.state.key_cache
    return await cache.authenticate(credentials.credentials if credentials else None)


def scope(name: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that answers the caller, or 401/403 when the key is missing or too weak.

    It reads the key itself rather than through `principal`: one dependency level less to
    solve on every request."""

    async def check(request: Request, credentials: Credentials) -> Principal:
        who = await principal(request, credentials)
        who.require(name)
        return who

    check.__name__ = f"require_{name}"
    return check


AppDep = Annotated[Crisper, Depends(get_crisper)]
Reader = Annotated[Principal, Depends(scope("read"))]
Writer = Annotated[Principal, Depends(scope("write"))]
Admin = Annotated[Principal, Depends(scope("admin"))]
