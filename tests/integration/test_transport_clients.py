"""Crisper's Redis transport runs a channel's commands through one redis-py client, not a new
client per publish (Kombu's own transport builds one for each)."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from crisper import Crisper
from crisper.engine.dispatch import queue_depth, send_wake
from tests.harness import Backend

pytestmark = pytest.mark.backends("postgres-redis")


def test_twenty_wake_ups_published_on_one_channel_build_one_client_and_all_arrive(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    app = Crisper("clients", settings=backend.settings.model_copy(update={"queues": ["mail"]}))
    app.job(name="clients.noop", queue="mail")(lambda ctx: None)
    built: list[Any] = []
    original = redis.Redis.__init__

    def counted(self: redis.Redis, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        original(self, *args, **kwargs)

    with app.celery.producer_or_acquire() as producer:
        send_wake(app.celery, producer, "clients.noop", "mail", 0)  # the channel is set up
        monkeypatch.setattr(redis.Redis, "__init__", counted)
        for _ in range(20):
            send_wake(app.celery, producer, "clients.noop", "mail", 0)
        monkeypatch.undo()

    assert len(built) == 0  # the first publish's client served the twenty after it
    assert queue_depth(app.celery, "mail") == 21
    app.store.close()
