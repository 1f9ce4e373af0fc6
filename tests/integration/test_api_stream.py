"""The SSE stream read for real: state, progress and log events until the final state."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crisper import Client
from tests.api_support import api_server, key
from tests.harness import Backend


@pytest.fixture
def client(backend: Backend) -> Iterator[Client]:
    backend.start_worker()
    with api_server(backend.app) as url, Client(url, key(backend.app)) as c:
        yield c


def test_the_stream_carries_states_progress_and_logs_to_the_end(client: Client) -> None:
    # Given a job that logs 5 lines and reports 5 progress steps
    job = client.submit("probe.chatty", {"lines": 5, "steps": 5})

    # When its stream is read until the server ends it
    events = list(client.stream(job.id))

    # Then it saw every state change in order, every log line once, progress, and ends final
    states = [e.data["state"] for e in events if e.kind == "state"]
    assert states == ["queued", "running", "succeeded"]
    logs = [e.data["message"] for e in events if e.kind == "log"]
    # each line exactly once (a line published live can overtake lines the job wrote before
    # the stream subscribed; the stored order is in /logs and in the event ids)
    assert sorted(logs) == [f"line {i}" for i in range(5)]
    progress = [e.data for e in events if e.kind == "progress"]
    assert progress and progress[-1]["current"] == 5 and progress[-1]["percent"] == 100.0
    assert events[-1].kind == "state" and events[-1].data["state"] == "succeeded"


def test_a_reconnect_with_last_event_id_resumes_without_repeats(client: Client) -> None:
    # Given a finished job and a client that read only its first event
    job = client.submit("probe.chatty", {"lines": 3})
    client.wait(job.id, timeout=30)
    first = next(iter(client.stream(job.id)))
    assert first.kind == "state" and first.data["state"] == "queued" and first.id

    # When it reconnects with that event's id
    rest = list(client.stream(job.id, last_event_id=first.id))

    # Then it gets the rest exactly once, ending with the final state
    assert [e.data.get("state") or e.data.get("message") for e in rest
            if e.kind != "progress"] == ["running", "line 0", "line 1", "line 2", "succeeded"]


@pytest.mark.backends("postgres-redis")
def test_a_stream_opened_while_running_follows_a_cancel(client: Client) -> None:
    job = client.submit("probe.sleep", {"seconds": 60})
    seen = []
    for event in client.stream(job.id):
        seen.append(event)
        if event.kind == "state" and event.data["state"] == "running" and len(seen) < 10:
            client.cancel(job.id)
    reasons = [(e.kind, e.data["reason"]) for e in seen if e.kind in ("state", "note")]
    assert reasons == [("state", "submitted"), ("state", "claimed"), ("note", "cancel_requested"),
                       ("state", "cancelled")]


@pytest.mark.backends("postgres-redis")
def test_progress_on_the_stream_never_goes_back(client: Client) -> None:
    # Given a job that reports 120 rising steps quickly, for several store reads of the stream
    job = client.submit("probe.steps", {"steps": 120, "seconds": 0.04})

    # When its stream is read to the end
    progress = [e.data["current"] for e in client.stream(job.id) if e.kind == "progress"]

    # Then the live updates and the stored snapshots arrive in order: never an older value
    # after a newer one (the store's copy lags the live channel by up to a heartbeat)
    assert progress and progress[-1] == 120
    assert progress == sorted(progress), progress
