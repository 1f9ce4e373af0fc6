"""Live news goes out only for jobs a watcher announced, read on a real Redis."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from crisper.live import NOTICED_WITHIN, WATCHED, LivePublisher, Watch, channel
from tests.conftest import require
from tests.harness import REDIS_BASE

REDIS_URL = f"{REDIS_BASE}/0"


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    require("redis")
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


def received(client: redis.Redis, job_id: uuid.UUID, publish: LivePublisher) -> list[bytes]:
    """What a subscriber of the job's channel gets while `publish` sends one message."""
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel(job_id))
    try:
        publish.publish(job_id, "state", {"state": "running"})
        got = []
        deadline = time.monotonic() + 0.5
        while (left := deadline - time.monotonic()) > 0:
            message = pubsub.get_message(timeout=left)
            if message is not None and message["type"] == "message":
                got.append(message["data"])
        return got
    finally:
        pubsub.close()


def test_news_of_an_unwatched_job_is_not_sent(client: redis.Redis) -> None:
    job_id = uuid.uuid4()
    assert received(client, job_id, LivePublisher(REDIS_URL)) == []


def test_a_watcher_gets_news_once_publishers_noticed_it_and_not_after_it_left(
        client: redis.Redis) -> None:
    # Given a publisher that has read the (empty) announcements, then a watcher announcing
    job_id = uuid.uuid4()
    publisher = LivePublisher(REDIS_URL)
    assert received(client, job_id, publisher) == []
    watch = Watch(client, job_id)
    watch.renew()

    # When the publisher's next read is due
    time.sleep(NOTICED_WITHIN)

    # Then the job's news reaches the watcher; once the watcher ends, it no longer does
    assert len(received(client, job_id, publisher)) == 1
    watch.end()
    time.sleep(NOTICED_WITHIN)
    assert received(client, job_id, publisher) == []


def test_one_watcher_leaving_does_not_silence_another(client: redis.Redis) -> None:
    job_id = uuid.uuid4()
    first, second = Watch(client, job_id), Watch(client, job_id)
    first.renew()
    second.renew()
    first.end()
    assert len(received(client, job_id, LivePublisher(REDIS_URL))) == 1
    second.end()


def test_an_announcement_lapses_unless_renewed(client: redis.Redis) -> None:
    # Given an announcement whose watcher died long ago (its lapse time is past)
    job_id = uuid.uuid4()
    client.zadd(WATCHED, {f"{job_id} dead": time.time() - 1})

    # Then no news is sent for it, and the next watcher's announcement clears it away
    assert received(client, job_id, LivePublisher(REDIS_URL)) == []
    other = Watch(client, uuid.uuid4())
    other.renew()
    assert client.zscore(WATCHED, f"{job_id} dead") is None
    other.end()
