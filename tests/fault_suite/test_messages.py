"""Hostile bytes on the broker: garbage, pickle, unknown-task and wrong-type messages pushed
into the queue a worker consumes, and submits naming the broker's own keys as their queue.
Expected: workers survive and keep consuming, every real job ends succeeded, once, by its own
type's body; poisoned queue names are refused (422) before anything reaches the broker."""

from __future__ import annotations

import base64
import json
import pickle
import time
import uuid
from typing import Any

import httpx
import pytest

from crisper.errors import CrisperError
from tests.api_support import api_server, key
from tests.fault_suite.conftest import Scenario
from tests.fault_suite.private import FaultBackend
from tests.harness import Proc, wait_for

pytestmark = pytest.mark.faults
QUEUE_KEY = "default\x06\x169"  # Kombu's Redis list for the default queue, at Crisper's priority 0


def envelope(task: str, body: bytes, content_type: str = "application/json") -> dict[str, Any]:
    """A Kombu-on-Redis message as Celery (protocol 2) sends it."""
    task_id = str(uuid.uuid4())
    return {
        "body": base64.b64encode(body).decode(), "content-encoding": "utf-8",
        "content-type": content_type,
        "headers": {"lang": "py", "task": task, "id": task_id, "root_id": task_id,
                    "retries": 0, "timelimit": [None, None], "argsrepr": "", "kwargsrepr": ""},
        "properties": {"correlation_id": task_id, "delivery_mode": 2,
                       "delivery_info": {"exchange": "", "routing_key": "default"},
                       "priority": 9, "body_encoding": "base64",
                       "delivery_tag": str(uuid.uuid4())},
    }


def task_body(*job_ids: str) -> bytes:
    return json.dumps([[list(job_ids)], {}, {"callbacks": None, "errbacks": None,
                                              "chain": None, "chord": None}]).encode()


def bad_base64() -> bytes:
    message = envelope("fault.once", task_body(str(uuid.uuid4())))
    message["body"] = "!!! not base64 !!!"
    return json.dumps(message).encode()


INJECTED = {
    "text": lambda: b"this is not JSON at all",
    "json-list": lambda: b"[1, 2, 3]",
    "bad-base64": bad_base64,
    "pickle": lambda: json.dumps(envelope(
        "fault.once", pickle.dumps(((["x"],), {}, {})), "application/x-python-serialize")
    ).encode(),
    "unknown-task": lambda: json.dumps(envelope("no.such.type", task_body("x"))).encode(),
}


def alive(worker: Proc) -> str:
    code = worker.popen.poll()
    return "worker alive" if code is None else f"worker exited with code {code}"


def push(fb: FaultBackend, raw: bytes) -> None:
    assert fb.redis_server is not None
    with fb.redis_server.client() as client:
        client.lpush(QUEUE_KEY, raw)


@pytest.mark.parametrize("kind", list(INJECTED))
def test_injected_message(fb: FaultBackend, scenario: Scenario, kind: str) -> None:
    # Given a worker working through jobs
    worker = fb.start_worker(concurrency=2)
    fb.start_scheduler()
    scenario.submit(fb.app, "fault.once", 6, seconds=0.2)
    wait_for(lambda: fb.started() >= 1, 30, "jobs to start")
    # When a hostile message lands in its queue, followed by more jobs
    push(fb, INJECTED[kind]())
    scenario.fault_over()
    time.sleep(1)
    scenario.submit(fb.app, "fault.once", 6, seconds=0.2)
    # Then the worker is still consuming: every job succeeds, once
    scenario.note(lambda: alive(worker))
    scenario.finish(fb, timeout=20, recover_within=15)
    assert worker.popen.poll() is None, worker.output()[-2000:]


def test_wrong_type_message(fb: FaultBackend, scenario: Scenario) -> None:
    """A message naming job type B with the id of a queued job of type A runs nothing."""
    # Given three queued jobs of type fault.once whose own messages are gone
    ids = scenario.submit(fb.app, "fault.once", 3, seconds=0.2)
    assert fb.redis_server is not None
    with fb.redis_server.client() as client:
        client.delete(QUEUE_KEY)
        # When messages naming type fault.other with their ids are sent instead
        for job_id in ids:
            client.lpush(QUEUE_KEY, json.dumps(envelope("fault.other", task_body(str(job_id)))))
    fb.start_worker(concurrency=2)
    fb.start_scheduler()
    scenario.fault_over()
    # Then each job is run once, by its own type's body (the relay re-sends its message)
    wrong = lambda: [m for m in fb.marks() if m.body != "work"]  # noqa: E731
    scenario.note(lambda: f"runs by another type's body: {len({m.run for m in wrong()})}")
    scenario.finish(fb, timeout=30)
    assert not wrong(), wrong()


POISONED = ["unacked", "_kombu.binding.default", "unacked_index", "celeryev", "x.pidbox"]


def test_poisoned_queue_names(fb: FaultBackend, scenario: Scenario) -> None:
    # Given a worker and a scheduler, and the HTTP API with a write-scoped key
    worker = fb.start_worker(concurrency=2)
    fb.start_scheduler()
    answers: dict[str, int] = {}
    refused_python: list[str] = []
    with api_server(fb.app) as url:
        auth = {"Authorization": f"Bearer {key(fb.app, scopes='read,write')}"}
        # When submits name the broker's own keys as their queue (HTTP and Python)
        for name in POISONED:
            response = httpx.post(f"{url}/v1/jobs", headers=auth, timeout=30, json={
                "type": "fault.once", "params": {"seconds": 0.1}, "queue": name})
            answers[name] = response.status_code
            if response.status_code < 300:
                scenario.ids.append(uuid.UUID(response.json()["id"]))
        for name in POISONED:
            try:
                scenario.ids.append(fb.app.submit("fault.once", {"seconds": 0.1}, queue=name).id)
            except CrisperError:
                refused_python.append(name)
    scenario.fault_over()
    # Then the workers and the relay are unaffected: new jobs, delayed ones too, all succeed
    time.sleep(2)
    scenario.submit(fb.app, "fault.once", 6, seconds=0.2)
    scenario.ids.append(fb.app.submit("fault.once", {"seconds": 0.1}, delay=1).id)
    accepted = sorted(n for n, code in answers.items() if code < 300)
    scenario.note(f"HTTP 422 for {sum(c == 422 for c in answers.values())}/{len(POISONED)}, "
                  f"Python refused {len(refused_python)}/{len(POISONED)}"
                  + (f"; accepted: {', '.join(accepted)}" if accepted else ""))
    scenario.note(lambda: alive(worker))
    scenario.finish(fb, timeout=20)
    assert answers == {name: 422 for name in POISONED}
    assert refused_python == POISONED
    assert worker.popen.poll() is None, worker.output()[-2000:]
