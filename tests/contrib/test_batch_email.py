"""Batch e-mail end to end: real worker processes, PostgreSQL, Redis and a real SMTP server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from string import Template

import pytest

from crisper import Crisper, JobState
from crisper.contrib.batch_email import BatchEmail, SmtpServer
from crisper.engine.context import JobContext
from tests.apps import contribapp
from tests.conftest import require
from tests.contrib.smtp_inbox import Inbox, smtp_server
from tests.harness import REDIS_BASE, Backend, delete_prefixed

pytestmark = [pytest.mark.backends("postgres-redis"), pytest.mark.slow]


@pytest.fixture
def inbox() -> Inbox:
    return Inbox(refuse={"gone@shop.example"}, flaky={"busy@shop.example"})


@pytest.fixture
def mail_app(backend: Backend, inbox: Inbox, tmp_path: Path) -> Iterator[Crisper]:
    with smtp_server(inbox) as port:
        backend.start_worker(extra=["-Q", "email"], CRISPER_APP="tests.apps.contribapp",
                             CONTRIB_SMTP_PORT=str(port))
        app = contribapp.build(backend.settings, folder=tmp_path)
        yield app
        app.store.close()


def person(to: str, name: str = "Ada") -> dict[str, object]:
    return {"to": to, "values": {"name": name}}


def test_each_recipient_gets_one_message_4xx_is_retried_and_5xx_recorded(
        mail_app: Crisper, inbox: Inbox) -> None:
    # Given five addresses: two fine, one answering 451 twice, one refused with 550, one
    # repeated, and one without a value its template needs
    recipients = [person("ada@shop.example"), person("busy@shop.example", "Bo"),
                  person("gone@shop.example"), person("cy@shop.example", "<Cy>"),
                  person("ada@shop.example"), {"to": "nameless@shop.example"}]

    # When the batch runs on a worker
    job = mail_app.submit("contrib.newsletter", {"recipients": recipients,
                                                 "values": {"offer": "10% off"}})
    job.wait(timeout=120)

    # Then each deliverable address got exactly one message
    record = mail_app.jobs.get(job.id)
    assert record.state is JobState.SUCCEEDED, record.error
    assert inbox.count() == 3
    assert [inbox.count(a) for a in ("ada@shop.example", "busy@shop.example",
                                     "cy@shop.example")] == [1, 1, 1]
    assert inbox.tries["busy@shop.example"] == 3 and inbox.tries["gone@shop.example"] == 1
    # and the result says what happened to each, in order
    by_status = [(r["to"], r["status"]) for r in record.result["recipients"]]
    assert by_status == [("ada@shop.example", "sent"), ("busy@shop.example", "sent"),
                         ("gone@shop.example", "failed"), ("cy@shop.example", "sent"),
                         ("ada@shop.example", "duplicate"),
                         ("nameless@shop.example", "failed")]
    gone = record.result["recipients"][2]
    assert gone["code"] == 550 and "no such mailbox" in gone["error"] and gone["tries"] == 1
    assert record.result["recipients"][1]["tries"] == 3
    assert record.result["recipients"][5]["error"] == "no value for $name in the template"
    assert (record.result["sent"], record.result["failed"]) == (3, 2)
    # and the templates were filled, the HTML part escaped
    _, _, message = next(m for m in inbox.arrived if m[1] == "cy@shop.example")
    assert message["Subject"] == "News for <Cy>"
    parts = {p.get_content_type(): p.get_payload(decode=True).decode().replace("\r\n", "\n")
             for p in message.walk() if not p.is_multipart()}
    assert parts["text/plain"].startswith("Hello <Cy>,\n10% off")
    assert "<p>Hello &lt;Cy&gt;,</p>" in parts["text/html"]


def test_test_mode_renders_and_records_without_sending(mail_app: Crisper, inbox: Inbox
                                                       ) -> None:
    job = mail_app.submit("contrib.newsletter", {
        "recipients": [person("ada@shop.example"), person("bo@shop.example", "Bo")],
        "values": {"offer": "free tea"}, "test_mode": True})
    job.wait(timeout=120)

    record = mail_app.jobs.get(job.id)
    assert record.state is JobState.SUCCEEDED, record.error
    assert inbox.count() == 0 and not inbox.tries
    assert record.result["test_mode"] is True and record.result["rendered"] == 2
    assert record.result["previews"][1] == {"to": "bo@shop.example", "subject": "News for Bo",
                                            "text": "Hello Bo,\nfree tea\n"}


def test_two_mailing_types_share_one_rate_limit(mail_app: Crisper, inbox: Inbox) -> None:
    # Given two job types on one shared limit of 5/s (burst 2) and 8 + 8 recipients
    news = [person(f"n{i}@shop.example") for i in range(8)]
    remind = [{"to": f"r{i}@shop.example"} for i in range(8)]

    # When both batches run at once on a worker with two slots
    jobs = [mail_app.submit("contrib.newsletter", {"recipients": news,
                                                   "values": {"offer": "x"}}),
            mail_app.submit("contrib.reminder", {"recipients": remind})]
    for job in jobs:
        job.wait(timeout=180)

    # Then all 16 arrived, and no faster than the shared limit allows: the 16 sends span at
    # least (16 - burst) slots of 0.2 s (a lower bound only: a loaded machine is slower)
    assert [mail_app.jobs.get(j.id).state for j in jobs] == [JobState.SUCCEEDED] * 2
    times = sorted(t for t, _, _ in inbox.arrived)
    assert len(times) == 16
    interval = 1 / 5
    assert times[-1] - times[0] >= (16 - contribapp.MAIL_BURST) * interval * 0.95
    # any window holds at most burst + window / interval sends
    for i, start in enumerate(times):
        in_window = sum(1 for t in times[i:] if t - start <= 1.0)
        assert in_window <= contribapp.MAIL_BURST + 1.0 / interval + 1  # +1: arrival jitter


def test_a_second_attempt_of_the_same_job_skips_who_already_got_the_message() -> None:
    # The body run twice for one job id (as a retry after a lost worker would), on a real
    # SMTP server and the real Redis
    require("redis")
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    inbox = Inbox(flaky={"late@shop.example"}, flaky_times=99)
    try:
        with smtp_server(inbox) as port:
            spec = BatchEmail("t.mail", SmtpServer("127.0.0.1", port, timeout=10),
                              "news@shop.example", Template("Hi"), Template("Hello"), None,
                              None, f"{REDIS_BASE}/1", prefix, attempts=2, backoff=0.05)
            ctx = JobContext(job_id=uuid.uuid4(), job_type="t.mail", attempt=1,
                             max_attempts=2, lease_token=uuid.uuid4(), lease_seconds=60,
                             max_log_lines=100)
            people = [{"to": "ada@shop.example"}, {"to": "late@shop.example"}]
            first = spec.run(ctx, people, None, False)
            second = spec.run(ctx, people, None, False)
    finally:
        delete_prefixed(f"{REDIS_BASE}/1", prefix)

    assert [r["status"] for r in first["recipients"]] == ["sent", "failed"]
    assert second["recipients"][0] == {"to": "ada@shop.example", "status": "sent", "tries": 0,
                                       "error": "sent by an earlier attempt of this job"}
    assert second["recipients"][1]["status"] == "failed"
    assert inbox.count("ada@shop.example") == 1 and inbox.tries["late@shop.example"] == 4
