"""The dashboard's webhooks page: a tenant's subscriptions, added and removed as a user."""

from __future__ import annotations

import httpx
import pytest

from crisper.dashboard.session import SESSION_COOKIE, new_session
from tests.api_support import api_server, key
from tests.harness import Backend


@pytest.mark.backends("postgres-redis")
def test_subscriptions_are_added_listed_and_removed_per_tenant(backend: Backend) -> None:
    app = backend.app_with()
    with api_server(app) as root:
        session = new_session(key(app, "acme"))
        cookies = {SESSION_COOKIE: session.encode()}
        # Given a user of tenant acme on the webhooks page
        page = httpx.get(f"{root}/dashboard/webhooks", cookies=cookies)
        assert page.status_code == 200 and "No subscriptions" in page.text
        # When they subscribe to two events for one job type
        added = httpx.post(f"{root}/dashboard/webhooks/subscriptions", cookies=cookies,
                           data={"csrf": session.csrf, "url": "https://hooks.example.com/a",
                                 "events": ["job.failed", "workflow.finished"],
                                 "type": "probe.noop", "queue": ""},
                           follow_redirects=True)
        # Then it is stored for acme with what they chose, and listed
        assert added.status_code == 200, added.text[:300]
        [sub] = app.webhooks.subscriptions("acme")
        assert (sub.url, sorted(sub.events), sub.type, sub.queue) == (
            "https://hooks.example.com/a", ["job.failed", "workflow.finished"], "probe.noop",
            None)
        assert "https://hooks.example.com/a" in added.text and "Subscription added" in added.text
        # And a bad subscription is refused, naming what is wrong, and stores nothing
        bad = httpx.post(f"{root}/dashboard/webhooks/subscriptions", cookies=cookies,
                         data={"csrf": session.csrf, "url": "https://hooks.example.com/b",
                               "events": ["job.exploded"]})
        assert bad.status_code >= 400 and "job.exploded" in bad.text
        assert len(app.webhooks.subscriptions("acme")) == 1
        # And another tenant neither sees nor removes it
        other = new_session(key(app, "other"))
        theirs = {SESSION_COOKIE: other.encode()}
        assert "hooks.example.com/a" not in httpx.get(f"{root}/dashboard/webhooks",
                                                     cookies=theirs).text
        gone = httpx.post(f"{root}/dashboard/webhooks/subscriptions/{sub.id}/delete",
                          cookies=theirs, data={"csrf": other.csrf})
        assert gone.status_code == 404 and len(app.webhooks.subscriptions("acme")) == 1
        # And its owner removes it
        removed = httpx.post(f"{root}/dashboard/webhooks/subscriptions/{sub.id}/delete",
                             cookies=cookies, data={"csrf": session.csrf}, follow_redirects=True)
        assert removed.status_code == 200 and "Subscription removed" in removed.text
        assert app.webhooks.subscriptions("acme") == []
