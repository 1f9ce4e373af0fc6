"""/v1/webhooks, /v1/deliveries, /v1/jobs/{id}/deliveries: subscriptions, secrets, the
record of deliveries and manual redelivery."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from crisper.api.auth import Admin, AppDep, Reader, Writer
from crisper.api.problems import responses
from crisper.store.deliveries import AttemptRecord, DeliveryRecord
from crisper.webhooks.service import DEFAULT_OVERLAP_SECONDS, Subscription

router = APIRouter(tags=["webhooks"], responses=responses(401, 403, 500, 503))


class SubscriptionBody(BaseModel):
    url: str = Field(max_length=2000, description="http(s) URL the events are POSTed to")
    events: list[str] = Field(min_length=1, max_length=20, description="e.g. job.failed")
    type: str | None = Field(None, max_length=200, description="only jobs of this type")
    queue: str | None = Field(None, max_length=200, description="only jobs on this queue")


class SubscriptionOut(BaseModel):
    id: uuid.UUID
    url: str
    events: list[str]
    type: str | None
    queue: str | None
    created_at: datetime

    @classmethod
    def of(cls, s: Subscription) -> SubscriptionOut:
        return cls(id=s.id, url=s.url, events=s.events, type=s.type, queue=s.queue,
                   created_at=s.created_at)


class Attempt(BaseModel):
    at: datetime
    status: int | None
    error: str | None
    seconds: float


class Delivery(BaseModel):
    id: uuid.UUID
    event: str
    event_id: uuid.UUID
    url: str | None = Field(description="none for a batch's callback job")
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    next_at: datetime
    delivered_at: datetime | None
    created_at: datetime
    job_id: uuid.UUID | None
    batch_id: uuid.UUID | None
    tries: list[Attempt] | None = None

    @classmethod
    def of(cls, d: DeliveryRecord, tries: list[AttemptRecord] | None = None) -> Delivery:
        return cls(id=d.id, event=d.event, event_id=d.event_id, url=d.url,
                   state=d.state,  # type: ignore[arg-type]
                   attempts=d.attempts, last_status=d.last_status, last_error=d.last_error,
                   last_attempt_at=d.last_attempt_at, next_at=d.next_at,
                   delivered_at=d.delivered_at, created_at=d.created_at, job_id=d.job_id,
                   batch_id=d.batch_id,
                   tries=[Attempt(**t.__dict__) for t in tries] if tries is not None else None)


class Secrets(BaseModel):
    secrets: list[str] = Field(description="the secrets signing now, newest first")


@router.post("/v1/webhooks/subscriptions", status_code=201, response_model=SubscriptionOut,
             responses=responses(400, 413, 422))
def subscribe(body: SubscriptionBody, crisper: AppDep, who: Writer) -> SubscriptionOut:
    """Subscribe a URL to this tenant's events."""
    return SubscriptionOut.of(crisper.webhooks.subscribe(
        body.url, body.events, who.tenant, type=body.type, queue=body.queue))


@router.get("/v1/webhooks/subscriptions", response_model=list[SubscriptionOut])
def subscriptions(crisper: AppDep, who: Reader) -> list[SubscriptionOut]:
    return [SubscriptionOut.of(s) for s in crisper.webhooks.subscriptions(who.tenant)]


@router.delete("/v1/webhooks/subscriptions/{sub_id}", status_code=204,
               responses=responses(404))
def unsubscribe(sub_id: str, crisper: AppDep, who: Writer) -> Response:
    crisper.webhooks.unsubscribe(sub_id, who.tenant)
    return Response(status_code=204)


@router.get("/v1/webhooks/secret", response_model=Secrets)
def secret(crisper: AppDep, who: Admin) -> Secrets:
    """The tenant's signing secrets (made on first ask)."""
    return Secrets(secrets=crisper.webhooks.secrets(who.tenant))


@router.post("/v1/webhooks/secret/rotate", response_model=Secrets, responses=responses(422))
def rotate(crisper: AppDep, who: Admin,
           overlap: float = Query(DEFAULT_OVERLAP_SECONDS, ge=0, le=30 * 86400,
                                  description="seconds the old secrets keep signing")
           ) -> Secrets:
    crisper.webhooks.rotate_secret(who.tenant, overlap)
    return Secrets(secrets=crisper.webhooks.secrets(who.tenant))


@router.get("/v1/deliveries", response_model=list[Delivery])
def deliveries(crisper: AppDep, who: Reader,
               state: Literal["pending", "delivered", "failed"] | None = None,
               limit: int = Query(100, ge=1, le=1000)) -> list[Delivery]:
    return [Delivery.of(d) for d in crisper.webhooks.deliveries(who.tenant, state=state,
                                                                  limit=limit)]


@router.get("/v1/jobs/{job_id}/deliveries", response_model=list[Delivery],
            responses=responses(404))
def job_deliveries(job_id: str, crisper: AppDep, who: Reader) -> list[Delivery]:
    """The webhook deliveries this job's events caused, newest first."""
    record = crisper.jobs.get(job_id, who.tenant)
    return [Delivery.of(d) for d in crisper.webhooks.deliveries(who.tenant, job_id=record.id)]


@router.get("/v1/deliveries/{delivery_id}", response_model=Delivery, responses=responses(404))
def delivery(delivery_id: str, crisper: AppDep, who: Reader) -> Delivery:
    """One delivery with each of its tries."""
    found, tries = crisper.webhooks.delivery(delivery_id, who.tenant)
    return Delivery.of(found, tries)


@router.post("/v1/deliveries/{delivery_id}/redeliver", response_model=Delivery,
             responses=responses(404))
def redeliver(delivery_id: str, crisper: AppDep, who: Writer) -> Delivery:
    """Send it again now (same delivery and event ids, so receivers can deduplicate)."""
    return Delivery.of(crisper.webhooks.redeliver(delivery_id, who.tenant))


