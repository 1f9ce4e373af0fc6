"""Runs the project's unchanged callers in a process of their own (one stage's `proj` on the
path) and prints what they saw as JSON: `python -m tests.driver STEP`, cwd examples/celery_adopt.
"""

import json
import sys
import time
import uuid

import callers
from proj import app, demo, emails


def calls():
    """Every caller once; results read back through .get() and AsyncResult."""
    out = {}
    welcome = callers.signup(7)
    bounce = callers.check_bounce("a@example.com")
    launch = callers.launch_campaign(5)
    fetch = callers.scrape("https://flaky.example.com/")
    crawl = callers.crawl_site("https://example.com")
    summary = callers.summarize("a long text to be summarised")
    total = callers.add(2, 3)
    out["digest"] = callers.weekly_digest(7)
    out["report"] = callers.campaign_report(4)
    out["classify"] = callers.classify("hello")
    for name, result in [("welcome", welcome), ("bounce", bounce), ("launch", launch),
                         ("fetch", fetch), ("crawl", crawl), ("summary", summary),
                         ("add", total)]:
        out[name] = result.get(timeout=90)
        out[name + "_id"] = result.id
        out[name + "_state"] = result.state
        out[name + "_status"] = list(callers.status(result.id))
    stuck = callers.start_stuck(30)
    try:
        stuck.get(timeout=90)
        out["stuck_get"] = "returned"
    except Exception as exc:  # noqa: BLE001 - the caller sees the time limit's exception
        out["stuck_get"] = type(exc).__name__
    out["stuck_id"] = stuck.id
    out["stuck_state"] = stuck.state
    slow = callers.start_slow(60)
    time.sleep(3)
    slow.revoke(terminate=True)
    deadline = time.monotonic() + 60
    while not slow.ready() and time.monotonic() < deadline:
        time.sleep(0.5)
    out["slow_id"] = slow.id
    out["slow_state"] = callers.status(slow.id)[0]
    try:
        slow.get(timeout=5)
        out["slow_get"] = "returned"
    except Exception as exc:  # noqa: BLE001 - the caller sees Celery's exception kind
        out["slow_get"] = type(exc).__name__
    return out


def send_old():
    """Old-format messages, as a caller not yet redeployed sends them (run on stage 1)."""
    ids = {}
    for i in range(5):
        ids[f"add {i} {i}"] = demo.add.delay(i, i).id
    ids["add 100 100"] = demo.add.apply_async((100, 100), countdown=3).id
    ids["send_welcome 42"] = emails.send_welcome.apply_async((42,), countdown=1).id
    twice = "0e4f2b3c-1d2e-4f5a-8b6c-7d8e9f0a1b2c"
    for _ in range(2):  # the same message delivered twice
        app.send_task("proj.demo.add", args=(7, 7), task_id=twice, queue="general")
    ids["add 7 7"] = twice
    return ids


def send_garbage():
    """Messages no task can take, on the queue the workers consume."""
    with app.connection_for_write() as conn:
        producer = conn.Producer()
        for body in ("not a call", {"args": 1}):
            producer.publish(body, routing_key="general", serializer="json",
                             headers={"task": "proj.demo.add", "id": str(uuid.uuid4())})
        producer.publish(b"\x80\x04garbage", routing_key="general",
                         content_type="application/x-python-serialize",
                         content_encoding="binary", headers={"task": "proj.demo.add",
                                                             "id": str(uuid.uuid4())})
    return {"sent": 3}


def states():
    """The state of each id given on stdin, through AsyncResult."""
    ids = json.loads(sys.stdin.read())
    return {k: list(callers.status(v)) for k, v in ids.items()}


if __name__ == "__main__":
    step = {"calls": calls, "send_old": send_old, "states": states,
            "send_garbage": send_garbage}[sys.argv[1]]
    print("RESULT " + json.dumps(step(), default=str))
