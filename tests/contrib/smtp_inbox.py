"""A real local SMTP server (aiosmtpd) that counts what arrives and can answer 4xx or 5xx."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Inbox:
    """Accepts mail, except: `refuse` addresses get 550; `flaky` ones get 451 `flaky_times`
    times before being accepted."""

    refuse: set[str] = field(default_factory=set)
    flaky: set[str] = field(default_factory=set)
    flaky_times: int = 2
    tries: Counter[str] = field(default_factory=Counter)
    arrived: list[tuple[float, str, Message]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        with self.lock:
            self.tries[address] += 1
            tries = self.tries[address]
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        if address in self.flaky and tries <= self.flaky_times:
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content)
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.arrived.append((time.monotonic(), rcpt, message))
        return "250 Message accepted"

    def count(self, address: str | None = None) -> int:
        with self.lock:
            return sum(1 for _, to, _ in self.arrived if address is None or to == address)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def smtp_server(inbox: Inbox) -> Iterator[int]:
    """Serve `inbox` on a free local port for the duration; answers the port."""
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()
