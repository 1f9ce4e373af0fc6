"""API keys: each belongs to a tenant and carries scopes; the secret is shown once, stored hashed.

Secrets are 256 random bits, so one SHA-256 is enough to keep a stolen table useless
(slow password hashes exist for guessable secrets); it also lets a request find its key
with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from crisper.errors import AccessDenied, InvalidRequest, KeyNotFound, MissingScope
from crisper.store import api_keys as key_sql
from crisper.store import utcnow
from crisper.store.api_keys import ApiKeyRecord

if TYPE_CHECKING:
    from crisper.store import Store

SCOPES = ("read", "write", "admin")
SECRET_PREFIX = "crisper_"
TOUCH_EVERY = timedelta(seconds=60)  # last_used_at is a hint; one write a minute per key at most


@dataclass(frozen=True)
class NewKey:
    """A key just created: its record, and its secret, which is never shown again."""

    record: ApiKeyRecord
    secret: str


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, its tenant and scopes."""

    key_id: str
    tenant: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise MissingScope(
                f"API key {self.key_id} lacks the {scope!r} scope (it has: "
                f"{', '.join(sorted(self.scopes)) or 'none'}); create one with "
                f"`crisper keys create --tenant {self.tenant} --scopes {scope}`",
                scope=scope,
            )


def parse_scopes(scopes: Iterable[str]) -> list[str]:
    """Validated scopes in a stable order; InvalidRequest names the unknown ones."""
    wanted = {s.strip() for s in scopes if s.strip()}
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise InvalidRequest("scopes", f"unknown scope(s) {', '.join(unknown)}; "
                                       f"known: {', '.join(SCOPES)}")
    if not wanted:
        raise InvalidRequest("scopes", f"give at least one scope of {', '.join(SCOPES)}")
    return [s for s in SCOPES if s in wanted]


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyService:
    """Create, list, revoke and check API keys."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, tenant: str, scopes: Iterable[str], name: str | None = None) -> NewKey:
        if not tenant:
            raise InvalidRequest("tenant", "a key needs a tenant")
        checked = parse_scopes(scopes)
        key_id = f"key_{secrets.token_hex(6)}"
        secret = f"{SECRET_PREFIX}{secrets.token_urlsafe(32)}"
        at = utcnow()
        with self.store.transaction() as session:
            key_sql.create(session, key_id, tenant, name, hash_secret(secret), checked, at)
        record = ApiKeyRecord(key_id, tenant, name, checked, at, None, None)
        return NewKey(record, secret)

    def list(self, tenant: str | None = None, name: str | None = None,
             include_revoked: bool = True) -> list[ApiKeyRecord]:
        with self.store.read() as session:
            return key_sql.list_keys(session, tenant, name, include_revoked)

    def revoke(self, key_id: str) -> None:
        with self.store.transaction() as session:
            if key_sql.revoke(session, key_id, utcnow()):
                return
            if key_sql.exists(session, key_id):
                return  # already revoked: revoking again is harmless
        raise KeyNotFound(f"no API key has the id {key_id!r}; see `crisper keys ls`")

    def authenticate(self, secret: str | None) -> Principal:
        """The caller behind a secret, or AccessDenied saying what is wrong with it."""
        if not secret:
            raise AccessDenied("this endpoint needs an API key: send 'Authorization: Bearer <key>'")
        with self.store.read() as session:
            record = key_sql.find_active(session, hash_secret(secret))
        if record is None:
            raise AccessDenied("the API key is unknown or revoked")
        at = utcnow()
        if record.last_used_at is None or at - record.last_used_at > TOUCH_EVERY:
            with self.store.transaction() as session:
                key_sql.touch(session, record.id, at)
        return Principal(record.id, record.tenant, frozenset(record.scopes))
