"""The webhook deliverer: leases due deliveries from the outbox and sends them, signed.

It runs in the scheduler on a lane of its own (a slow receiver never holds up timers, the
lifeline or the relay) and never in a worker (a dead receiver never slows a job). Several
schedulers share the outbox: each delivery is leased to one (SKIP LOCKED), and its outcome is
written fenced by the lease token. A scheduler killed mid-send leaves a lease that expires;
the delivery is then sent again: at least once, never exactly once.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from crisper import outbound
from crisper.errors import BrokerUnavailable, CrisperError, OutboundRefused, StoreUnavailable
from crisper.service import JobService, SubmitRequest
from crisper.settings import Settings
from crisper.store import Store, utcnow
from crisper.store import deliveries as outbox
from crisper.webhooks import signing
from crisper.webhooks.service import ensure_secrets

log = logging.getLogger(__name__)
USER_AGENT = "Crisper-Webhooks/1"
PRUNE_EVERY_SECONDS = 300.0  # ended deliveries older than the job retention go this often
PRUNE_BATCH = 1000


def backoff(attempts: int, first: float, cap: float) -> float:
    """Seconds before the next try after `attempts` failed ones: doubling, capped."""
    return float(min(cap, first * 2.0 ** max(0, attempts - 1)))


def lease_seconds(timeout: float) -> float:
    """A send's lease: longer than one request with its redirects can take."""
    return timeout * 4 + 5


@dataclass(frozen=True)
class Outcome:
    status: int | None = None
    error: str | None = None
    delivered: bool = False
    final: bool = False  # no point trying again (a refused address, an invalid callback job)


class Deliverer:
    """One maintenance loop's deliverer: its HTTP client and its pool of senders. Batch
    callback jobs (deliveries without a URL) are submitted through `jobs`."""

    def __init__(self, store: Store, settings: Settings, jobs: JobService,
                 guard: outbound.Guard | None = None) -> None:
        self.store = store
        self.settings = settings
        self.jobs = jobs
        self._guard = guard
        self._client: httpx.Client | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pruned_at = 0.0

    def __call__(self, at: datetime) -> int:
        s = self.settings
        if self._pool is None:
            self._pool = ThreadPoolExecutor(s.webhook_concurrency, "crisper-webhook")
            self._client = outbound.new_client()
            self._guard = self._guard or outbound.Guard(s.outbound_allow)
        self._prune(at)
        with self.store.read() as session:
            if not outbox.any_due(session, at):
                return 0
        until = at + timedelta(seconds=lease_seconds(s.webhook_timeout_seconds))
        with self.store.transaction() as session:
            due = outbox.claim_due(session, at, s.webhook_concurrency * 4, until)
            signers = {t: ensure_secrets(session, t, at) for t in {d.tenant for d in due}}
        futures = [self._pool.submit(self.send_one, d, signers[d.tenant]) for d in due]
        for d, future in zip(due, futures, strict=True):
            outcome, took = future.result()
            self._record(d, outcome, took)
        return len(due)

    def _prune(self, at: datetime) -> None:
        if time.monotonic() - self._pruned_at < PRUNE_EVERY_SECONDS:
            return
        self._pruned_at = time.monotonic()
        before = at - timedelta(seconds=self.settings.retention_seconds)
        with self.store.transaction() as session:
            outbox.prune(session, before, PRUNE_BATCH)

    def send_one(self, d: outbox.DeliveryRecord, secrets: list[str]) -> tuple[Outcome, float]:
        began = time.monotonic()
        try:
            outcome = self._post(d, secrets) if d.url else self._submit_job(d)
        except Exception as exc:  # noqa: BLE001 - any failure is this try's outcome
            outcome = Outcome(error=f"{type(exc).__name__}: {exc}")
        return outcome, time.monotonic() - began

    def _post(self, d: outbox.DeliveryRecord, secrets: list[str]) -> Outcome:
        assert d.url is not None and self._client is not None and self._guard is not None
        body = json.dumps(d.body, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json", "User-Agent": USER_AGENT,
            signing.DELIVERY_HEADER: str(d.id), signing.EVENT_ID_HEADER: str(d.event_id),
            signing.EVENT_HEADER: d.event,
            signing.SIGNATURE_HEADER: signing.header(secrets, int(time.time()), body),
        }
        try:
            response = outbound.post(self._client, self._guard, d.url, content=body,
                                     headers=headers,
                                     timeout=self.settings.webhook_timeout_seconds)
        except OutboundRefused as exc:
            return Outcome(error=str(exc), final=True)
        except httpx.HTTPError as exc:
            return Outcome(error=f"{type(exc).__name__}: {exc}")
        response.close()
        if response.is_success:
            return Outcome(status=response.status_code, delivered=True)
        return Outcome(status=response.status_code, error=f"HTTP {response.status_code}")

    def _record(self, d: outbox.DeliveryRecord, outcome: Outcome, took: float) -> None:
        s = self.settings
        at = utcnow()
        give_up_at = d.give_up_at or at + timedelta(seconds=s.webhook_give_up_seconds)
        retry_at = at + timedelta(seconds=backoff(d.attempts, s.webhook_backoff_seconds,
                                                  s.webhook_backoff_max_seconds))
        if outcome.delivered:
            state = outbox.DELIVERED
        elif outcome.final or retry_at >= give_up_at:
            state = outbox.FAILED
        else:
            state = outbox.PENDING
        try:
            with self.store.transaction() as session:
                fenced = outbox.record_try(
                    session, d, at, status=outcome.status, error=outcome.error, seconds=took,
                    state=state, next_at=retry_at if state == outbox.PENDING else None,
                    give_up_at=give_up_at)
        except CrisperError as exc:  # the lease runs out and another scheduler tries again
            log.warning("delivery %s: outcome not recorded (%s)", d.id, exc)
            return
        if not fenced:
            log.warning("delivery %s: lease lost before its outcome was written", d.id)
        elif state != outbox.DELIVERED:
            log.info("delivery %s (%s) try %d: %s; %s", d.id, d.event, d.attempts,
                     outcome.error, "given up" if state == outbox.FAILED else "will retry")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._client is not None:
            self._client.close()


    def _submit_job(self, d: outbox.DeliveryRecord) -> Outcome:
        """A batch's callback job: submitted under an idempotency key made of the batch and
        the callback, so that a second try (after a lost lease) finds the first job."""
        spec = d.body
        try:
            record = self.jobs.submit(SubmitRequest(
                type=spec["type"], params=spec.get("params") or {}, queue=spec.get("queue"),
                idempotency_key=spec["idempotency_key"], tenant=d.tenant,
                metadata={"batch": str(d.batch_id)} if d.batch_id else None))
        except CrisperError as exc:  # the database or broker away: worth another try
            final = not isinstance(exc, (StoreUnavailable, BrokerUnavailable))
            return Outcome(error=str(exc), final=final)
        return Outcome(status=None, error=None, delivered=bool(record.id))
