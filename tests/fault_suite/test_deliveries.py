"""Scheduler loss mid-delivery: kill -9 of the scheduler while webhook requests are in flight.
Expected: every delivery reaches the receiver (at least once) and is recorded delivered."""

from __future__ import annotations

from collections import Counter

import pytest

from crisper.webhooks import signing
from tests.fault_suite.private import FaultBackend
from tests.harness import wait_for
from tests.receiver import Plan, receiver

pytestmark = pytest.mark.faults

ENV = {"CRISPER_OUTBOUND_ALLOW": "127.0.0.1/32", "CRISPER_WEBHOOK_BACKOFF_SECONDS": "0.2",
       "CRISPER_WEBHOOK_TIMEOUT_SECONDS": "3"}
COUNT = 20


@pytest.mark.timeout(240)
def test_kill_9_of_the_scheduler_mid_delivery_loses_no_delivery(fb: FaultBackend) -> None:
    app = fb.app
    # Given a receiver that holds its first 8 requests 2 s each, and 20 ended jobs whose
    # callbacks wait in the outbox
    with receiver(Plan(delay=2.0, delay_first=8)) as r:
        for _ in range(COUNT):
            app.submit("fault.once", hold=True, callback_url=r.url + "/cb").cancel()
        first = fb.start_scheduler(**ENV)
        wait_for(lambda: r.plan.arrived >= 1, 60, "a delivery to be in flight")
        # When the scheduler is SIGKILLed while requests are in flight
        first.kill()
        leased = [d for d in app.webhooks.deliveries("default", limit=100)
                  if d.lease_token is not None]
        assert leased, "the kill came with no delivery leased"
        # And another scheduler starts
        fb.start_scheduler(**ENV)
        wait_for(lambda: all(d.state == "delivered" for d in app.webhooks.deliveries(
            "default", limit=100)), 120, "every delivery after the kill", every=0.5)
    # Then every delivery reached the receiver, the ones cut off at least once more
    outbox = app.webhooks.deliveries("default", limit=100)
    received = Counter(g.headers[signing.DELIVERY_HEADER] for g in r.got)
    assert len(outbox) == COUNT and {str(d.id) for d in outbox} == set(received)
    assert all(d.attempts >= 2 for d in outbox if d.id in {x.id for x in leased})
    repeats = sum(n - 1 for n in received.values())
    print(f"\nkill -9 mid-delivery: {len(leased)} leased at the kill, {COUNT}/{COUNT} "
          f"delivered, {repeats} received twice (at least once), {r.plan.arrived} requests")
