"""Webhooks for adapters (API, CLI, dashboard): subscriptions, secrets, deliveries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from crisper import webhook_events as events
from crisper.errors import InvalidRequest, WebhookNotFound
from crisper.ids import parse_id
from crisper.names import text_problem
from crisper.outbound import checked_callback_url
from crisper.store import Store, utcnow
from crisper.store import deliveries as outbox
from crisper.webhooks import signing

DEFAULT_OVERLAP_SECONDS = 86400.0


@dataclass(frozen=True)
class Subscription:
    id: uuid.UUID
    tenant: str
    url: str
    events: list[str]
    type: str | None
    queue: str | None
    created_at: datetime


class WebhookService:
    """What the API, CLI and dashboard do with webhooks; the deliverer sends them."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def subscribe(self, url: str, event_names: Sequence[str], tenant: str, *,
                  type: str | None = None, queue: str | None = None) -> Subscription:
        checked_callback_url(url, "url")
        for name, value in (("type", type), ("queue", queue)):
            problem = None if value is None else text_problem(value, 200)
            if problem is not None:
                raise InvalidRequest(name, problem)
        unknown = [e for e in event_names if e not in events.SUBSCRIBABLE]
        if unknown or not event_names:
            raise InvalidRequest("events", f"unknown or no events {unknown}; known: "
                                 f"{', '.join(events.SUBSCRIBABLE)}")
        sub = Subscription(uuid.uuid4(), tenant, url, list(dict.fromkeys(event_names)), type,
                           queue, utcnow())
        with self.store.transaction() as session:
            outbox.add_subscription(session, sub.__dict__)
        return sub

    def subscriptions(self, tenant: str | None) -> list[Subscription]:
        with self.store.read() as session:
            rows = outbox.list_subscriptions(session, tenant)
        return [Subscription(**dict(r._mapping)) for r in rows]

    def unsubscribe(self, sub_id: object, tenant: str | None) -> None:
        parsed = parse_id(sub_id)
        with self.store.transaction() as session:
            if parsed is None or not outbox.remove_subscription(session, parsed, tenant):
                raise WebhookNotFound("subscription", sub_id)

    def secrets(self, tenant: str) -> list[str]:
        """The secrets signing now, newest first (the first one is made on first ask)."""
        with self.store.transaction() as session:
            return ensure_secrets(session, tenant, utcnow())

    def rotate_secret(self, tenant: str, overlap_seconds: float = DEFAULT_OVERLAP_SECONDS
                      ) -> str:
        """A new secret signs from now on; the old ones keep signing for `overlap_seconds`."""
        if overlap_seconds < 0:
            raise InvalidRequest("overlap", "must be zero or more seconds")
        secret = signing.new_secret()
        with self.store.transaction() as session:
            outbox.add_secret(session, tenant, secret, utcnow(),
                              timedelta(seconds=overlap_seconds))
        return secret

    def deliveries(self, tenant: str | None, *, job_id: object = None, batch_id: object = None,
                   state: str | None = None, limit: int = 100) -> list[outbox.DeliveryRecord]:
        with self.store.read() as session:
            return outbox.list_deliveries(
                session, tenant, job_id=_id_or_none(job_id), batch_id=_id_or_none(batch_id),
                state=state, limit=limit)

    def delivery(self, delivery_id: object, tenant: str | None
                 ) -> tuple[outbox.DeliveryRecord, list[outbox.AttemptRecord]]:
        parsed = parse_id(delivery_id)
        with self.store.read() as session:
            found = None if parsed is None else outbox.get(session, parsed, tenant)
            if found is None:
                raise WebhookNotFound("delivery", delivery_id)
            return found, outbox.attempts_of(session, found.id)

    def redeliver(self, delivery_id: object, tenant: str | None) -> outbox.DeliveryRecord:
        """Send a delivery again now (same delivery and event ids: receivers deduplicate)."""
        parsed = parse_id(delivery_id)
        with self.store.transaction() as session:
            if parsed is None or not outbox.redeliver(session, parsed, tenant, utcnow()):
                raise WebhookNotFound("delivery", delivery_id)
        return self.delivery(delivery_id, tenant)[0]


def ensure_secrets(session: Session, tenant: str, at: datetime) -> list[str]:
    """The tenant's signing secrets; the first one is made on first need."""
    found = outbox.secrets_in_force(session, tenant, at)
    if found:
        return found
    outbox.add_first_secret(session, tenant, signing.new_secret(), at)
    return outbox.secrets_in_force(session, tenant, at)


def _id_or_none(value: Any) -> uuid.UUID | None:
    if value is None:
        return None
    parsed = parse_id(value)
    if parsed is None:
        raise InvalidRequest("id", f"{value!r} is not an id")
    return parsed
