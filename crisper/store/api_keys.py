"""SQL for API keys: create, find by secret hash, list, revoke, and mark used."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from crisper.store.models import api_keys
from crisper.store.statements import changed


@dataclass(frozen=True)
class ApiKeyRecord:
    """An API key as stored: never its secret, only the secret's hash."""

    id: str
    tenant: str
    name: str | None
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> ApiKeyRecord:
        return cls(**{f.name: row._mapping[f.name] for f in fields(cls)})


_COLUMNS = [api_keys.c[f] for f in ApiKeyRecord.__dataclass_fields__]


def create(session: Session, key_id: str, tenant: str, name: str | None, secret_hash: str,
           scopes: list[str], at: datetime) -> None:
    session.execute(insert(api_keys).values(
        id=key_id, tenant=tenant, name=name, secret_hash=secret_hash, scopes=scopes,
        created_at=at,
    ))


def find_active(session: Session, secret_hash: str) -> ApiKeyRecord | None:
    row = session.execute(
        select(*_COLUMNS).where(api_keys.c.secret_hash == secret_hash,
                                api_keys.c.revoked_at.is_(None))
    ).first()
    return ApiKeyRecord.from_row(row) if row else None


def list_keys(session: Session, tenant: str | None = None, name: str | None = None,
              include_revoked: bool = True) -> list[ApiKeyRecord]:
    stmt = select(*_COLUMNS).order_by(api_keys.c.created_at, api_keys.c.id)
    if tenant is not None:
        stmt = stmt.where(api_keys.c.tenant == tenant)
    if name is not None:
        stmt = stmt.where(api_keys.c.name == name)
    if not include_revoked:
        stmt = stmt.where(api_keys.c.revoked_at.is_(None))
    return [ApiKeyRecord.from_row(r) for r in session.execute(stmt)]


def revoke(session: Session, key_id: str, at: datetime) -> bool:
    """Revoke an active key; False when no active key has that id."""
    return bool(changed(session, update(api_keys)
                        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                        .values(revoked_at=at)))


def exists(session: Session, key_id: str) -> bool:
    return session.execute(select(api_keys.c.id).where(api_keys.c.id == key_id)).first() is not None


def touch(session: Session, key_id: str, at: datetime) -> None:
    session.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=at))
