"""A real local HTTP receiver for webhook tests: records what it gets, answers as told."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Plan:
    """How the receiver answers: fail the first `fail` requests with `fail_status`, redirect
    every request to `redirect_to` if set, sleep `delay` seconds first."""

    fail: int = 0
    fail_status: int = 500
    redirect_to: str | None = None
    delay: float = 0.0
    delay_first: int = 0  # with `delay`: only the first this many requests wait (0: all)
    gate: threading.Event | None = None  # if set, every request hangs until the gate opens
    arrived: int = 0  # requests that came in (counted before any delay)
    served: int = 0
    got: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Receiver:
    def __init__(self, server: ThreadingHTTPServer, plan: Plan) -> None:
        self.server = server
        self.plan = plan

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def got(self) -> list[Received]:
        with self.plan.lock:
            return list(self.plan.got)


def _handler(plan: Plan) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with plan.lock:
                plan.arrived += 1
                wait = plan.delay and (not plan.delay_first or plan.arrived <= plan.delay_first)
            if wait:
                time.sleep(plan.delay)
            if plan.gate is not None:
                plan.gate.wait()
            with plan.lock:
                plan.got.append(Received(self.path, dict(self.headers.items()), body,
                                         time.time()))
                plan.served += 1
                failing = plan.served <= plan.fail
            if plan.redirect_to:
                self.send_response(307)
                self.send_header("Location", plan.redirect_to)
            else:
                self.send_response(plan.fail_status if failing else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST  # noqa: N815

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def receiver(plan: Plan | None = None, host: str = "127.0.0.1") -> Iterator[Receiver]:
    plan = plan or Plan()
    with _serve(_handler(plan), host) as server:
        yield Receiver(server, plan)


# A peer with logic of its own: answer(path, headers, body) -> (status, JSON body bytes).
Answer = Callable[[str, dict[str, str], bytes], tuple[int, bytes]]


@contextmanager
def serving(answer: Answer, host: str = "127.0.0.1") -> Iterator[str]:
    """A local HTTP server answering every POST with `answer`; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, data = answer(self.path, dict(self.headers.items()), body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with _serve(Handler, host) as server:
        yield f"http://{host}:{server.server_address[1]}"


@contextmanager
def _serve(handler: type[BaseHTTPRequestHandler], host: str) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer((host, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
