"""The HTTP call job type end to end: a real worker process, PostgreSQL, Redis, a scheduler
(for the retry timers) and a real HTTP server on 127.0.0.1 started by the test."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from crisper import Crisper, InvalidParams, JobState
from crisper.contrib.http_call import HttpCall
from tests.apps import httpapp
from tests.harness import Backend

pytestmark = [pytest.mark.backends("postgres-redis"), pytest.mark.slow]
ALLOW = {"CRISPER_OUTBOUND_ALLOW": "127.0.0.1/32"}


@dataclass
class Script:
    """What the server answers: one (status, headers, body) per request, the last repeated."""

    answers: list[tuple[int, dict[str, str], bytes]]
    trickle: float = 0.0  # seconds between the body's bytes (0: all at once)
    got: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self, method: str, path: str, headers: dict[str, str], body: bytes
             ) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.got.append((method, path, headers, body))
            return self.answers[min(len(self.got), len(self.answers)) - 1]


@contextmanager
def server(script: Script) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, headers, content = script.next(self.command, self.path,
                                                   dict(self.headers.items()), body)
            self.send_response(status)
            for name, value in {"Content-Length": str(len(content)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            if not script.trickle:
                self.wfile.write(content)
                return
            for i in range(len(content)):
                self.wfile.write(content[i:i + 1])
                self.wfile.flush()
                time.sleep(script.trickle)

        do_GET = do_POST = do_PUT = answer  # noqa: N815

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextmanager
def deployed(backend: Backend, **env: str) -> Iterator[Crisper]:
    """The HTTP call type's app here; a worker on its queue and a scheduler as processes."""
    env = {"CRISPER_APP": "tests.apps.httpapp", **env}
    backend.start_scheduler(**env)
    backend.start_worker(extra=["-Q", "http"], **env)
    app = httpapp.build(backend.settings)
    try:
        yield app
    finally:
        app.store.close()


def test_a_call_records_status_kept_headers_capped_body_and_time(backend: Backend) -> None:
    # Given a server on an allow-listed address that redirects once, then answers a big body
    big = b"x" * (httpapp.MAX_RESPONSE_BYTES + 500)
    script = Script([(303, {"Location": "/final"}, b""),
                     (201, {"Content-Type": "text/plain", "ETag": '"v7"',
                            "Set-Cookie": "secret=1"}, big)])
    with server(script) as url, deployed(backend, **ALLOW) as app:
        # When a POST with a body and a header of the submitter's is run
        job = app.submit(httpapp.CALL, {"url": f"{url}/orders?x=1", "method": "POST",
                                        "headers": {"X-Order": "7"}, "body": '{"id": 7}'})
        job.wait(timeout=120)

        # Then the server got them, and the result holds the answer as recorded
        record = app.jobs.get(job.id)
        assert record.state is JobState.SUCCEEDED, record.error
        (method, path, headers, body), (then, final, _, _) = script.got
        assert (method, path, body) == ("POST", "/orders?x=1", b'{"id": 7}')
        assert headers["X-Order"] == "7" and headers["User-Agent"] == "Crisper-HttpCall/1"
        assert headers["Host"] == url.removeprefix("http://")
        assert (then, final) == ("GET", "/final")  # a 303 turns the request into a GET
        result = record.result
        assert (result["status"], result["ok"], result["redirects"]) == (201, True, 1)
        assert result["url"] == f"{url}/final" and result["attempt"] == 1
        kept = {k: v for k, v in result["headers"].items() if k != "date"}
        assert kept == {"content-type": "text/plain", "etag": '"v7"',
                        "content-length": str(len(big))}  # no cookie kept
        assert result["body"] == "x" * httpapp.MAX_RESPONSE_BYTES and result["body_truncated"]
        assert result["body_bytes"] == httpapp.MAX_RESPONSE_BYTES and result["elapsed"] > 0


def test_without_the_allow_list_a_loopback_call_is_refused_at_once(backend: Backend) -> None:
    script = Script([(200, {}, b"hello")])
    with server(script) as url, deployed(backend) as app:  # no CRISPER_OUTBOUND_ALLOW
        job = app.submit(httpapp.CALL, {"url": f"{url}/internal"})
        job.wait(timeout=120)

        record = app.jobs.get(job.id)
        assert record.state is JobState.FAILED and record.error is not None
        assert record.error["type"] == "OutboundRefused"
        assert "127.0.0.1 is a loopback address" in record.error["message"]
        assert "CRISPER_OUTBOUND_ALLOW" in record.error["message"]
        assert record.attempt == 1 and script.got == []  # not retried, never connected


def test_a_redirect_to_an_address_not_allowed_is_refused(backend: Backend) -> None:
    # Given an allowed server that sends the caller on to the cloud metadata address
    script = Script([(302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b"")])
    with server(script) as url, deployed(backend, **ALLOW) as app:
        job = app.submit(httpapp.CALL, {"url": f"{url}/go"})
        job.wait(timeout=120)

        # Then the redirect is not followed and the job fails without a retry
        record = app.jobs.get(job.id)
        assert record.state is JobState.FAILED and record.error is not None
        assert record.error["type"] == "OutboundRefused"
        assert "169.254.169.254 is a link-local (metadata) address" in record.error["message"]
        assert record.attempt == 1 and len(script.got) == 1


def test_a_503_is_retried_after_its_retry_after_and_then_succeeds(backend: Backend) -> None:
    # Given a server that answers 503 (Retry-After: 1) once, then 200
    script = Script([(503, {"Retry-After": "1"}, b"busy"), (200, {}, b"done")])
    with server(script) as url, deployed(backend, **ALLOW) as app:
        job = app.submit(httpapp.CALL, {"url": f"{url}/work", "method": "PUT", "body": "b"})
        job.wait(timeout=120)

        # Then the second attempt succeeded, at least the server's second later
        record = app.jobs.get(job.id)
        assert record.state is JobState.SUCCEEDED, record.error
        assert (record.result["status"], record.result["body"], record.attempt) == (200, "done", 2)
        events = app.jobs.events(job.id)
        retrying = [e for e in events if e.to_state == "retrying"]
        assert len(retrying) == 1 and len(script.got) == 2
        started = [e.at for e in events if e.to_state == "running"]
        assert (started[1] - started[0]).total_seconds() >= 1.0
        assert [m for m, _, _, _ in script.got] == ["PUT", "PUT"]


def test_a_server_trickling_its_answer_is_stopped_at_the_calls_timeout(
        backend: Backend) -> None:
    # Given a server that sends its 150-byte body one byte each 0.2 s (30 s in all): no
    # single read waits long enough for httpx's own timeout
    script = Script([(200, {}, b"x" * 150)], trickle=0.2)
    with server(script) as url, deployed(backend, **ALLOW) as app:
        # When it is called with a 1 s timeout
        job = app.submit(httpapp.CALL, {"url": url, "timeout": 1})
        job.wait(timeout=120)

        # Then each attempt is cut long before the body ends (at about 1 s; the bound is
        # loose for a loaded machine), and retried as any timeout is
        record = app.jobs.get(job.id)
        assert record.state is JobState.FAILED and record.error is not None
        assert record.error["type"] == "ReadTimeout" and record.attempt == 3
        assert "longer than the call's timeout" in record.error["message"]
        events = app.jobs.events(job.id)
        ran = [e.at for e in events if e.to_state == "running"]
        ended = [e.at for e in events if e.from_state == "running"]
        assert all((b - a).total_seconds() < 15 for a, b in zip(ran, ended, strict=True))


@pytest.mark.parametrize(("params", "where"), [
    ({"url": "ftp://example.com/x"}, "url"),
    ({"url": "file:///etc/passwd"}, "url"),
    ({"url": "http://user:pw@example.com/"}, "url"),
    ({"url": "http://example.com/a b"}, "url"),
    ({"url": "http://example.com/", "method": "CONNECT"}, "method"),
    ({"url": "http://example.com/", "headers": {"Host": "internal"}}, "headers"),
    ({"url": "http://example.com/", "headers": {"Transfer-Encoding": "chunked"}}, "headers"),
    ({"url": "http://example.com/", "headers": {"X-A": "1\r\nX-B: 2"}}, "headers"),
    ({"url": "http://example.com/", "body": "é" * 600_000}, "body"),
    ({"url": "http://example.com/", "timeout": 3600}, "timeout"),
    ({"url": "http://example.com/", "proxy": "http://evil"}, "proxy"),
])
def test_params_are_checked_at_submit(params: dict[str, object], where: str) -> None:
    app = httpapp.build()
    with pytest.raises(InvalidParams) as caught:
        app.registry.get(httpapp.CALL).validate(params)
    assert where in str(caught.value)


def test_retry_after_and_bodies_are_read_safely() -> None:
    from email.utils import formatdate

    from crisper.contrib.http_call import _body
    from crisper.outbound import Guard

    spec = HttpCall("t", Guard(), max_retry_after=30.0)
    assert spec._retry_after("7") == 7.0 and spec._retry_after("3600") == 30.0
    assert 0 < (spec._retry_after(formatdate(time.time() + 10, usegmt=True)) or 0) <= 10
    assert spec._retry_after("soon") is None and spec._retry_after(None) is None
    assert _body("héllo".encode()) == {"body": "héllo"}
    assert _body(b"a\x00b") == {"body_base64": "YQBi"}  # JSON text cannot hold NUL
    assert _body(b"\xff\xfe") == {"body_base64": "//4="}
