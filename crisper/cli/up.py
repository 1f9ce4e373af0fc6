"""`crisper up`: start every part as a child process, keep them running, stop them in order.

Stopping (Ctrl-C or SIGTERM, also from a non-interactive shell where SIGINT starts ignored):
the API first (no new submits), then the worker's warm shutdown for up to `drain_seconds`
(running jobs finish and are recorded), then the scheduler, then the embedded broker last.
A second Ctrl-C cuts the drain short.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer

from crisper.embedded import EmbeddedBroker, UpLock, die_with_parent
from crisper.errors import ConfigurationError

if TYPE_CHECKING:
    from crisper.app import Crisper

LOCAL_KEY_NAME = "crisper up (local)"
STOP_WAIT_SECONDS = 10.0  # for the API, the scheduler, and a worker stopped cold
API_START_SECONDS = 30.0  # how long "up" waits for its API to listen before going on
BROKER_RESTART_DELAYS = (0.0, 1.0, 2.0, 5.0, 10.0)  # between failed restarts, then the last


@dataclass
class Options:
    concurrency: int
    pool: str
    api_host: str
    api_port: int
    drain_seconds: float

    @property
    def api_url(self) -> str | None:
        return f"http://{self.api_host}:{self.api_port}" if self.api_port else None


def say(message: str) -> None:
    typer.echo(f"crisper up: {message}", err=True)


class Up:
    """One `crisper up` run: its lock, the embedded broker, and the child processes."""

    def __init__(self, crisper: Crisper, options: Options) -> None:
        self.crisper = crisper
        self.options = options
        self.stop = threading.Event()   # first Ctrl-C / SIGTERM: stop in order
        self.hurry = threading.Event()  # second one: cut the drain short
        self.embedded: EmbeddedBroker | None = None
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self._broker_failures = 0
        self._broker_retry_at = 0.0

    def run(self, environ: MutableMapping[str, str]) -> int:
        """Run until asked to stop (exit code 0) or until a part dies on its own (1)."""
        self._handle_stop_signals()
        settings = self.crisper.settings
        uses_home = not settings.broker_url or not settings.database_url
        lock = UpLock(settings.home) if uses_home else None
        if lock:
            lock.acquire(self.options.api_url)  # before touching anything of a running `up`
        try:
            self._start(environ)
            return self._supervise()
        finally:
            self._stop_all()
            if lock:
                lock.release()

    def _handle_stop_signals(self) -> None:
        def handler(*_: Any) -> None:
            if self.stop.is_set():
                self.hurry.set()
            self.stop.set()

        signal.signal(signal.SIGINT, handler)  # explicitly: a `&` job starts with SIGINT ignored
        signal.signal(signal.SIGTERM, handler)

    def _start(self, environ: MutableMapping[str, str]) -> None:
        settings = self.crisper.settings
        if not settings.broker_url:
            self.embedded = EmbeddedBroker(settings.home)
            environ["CRISPER_BROKER_URL"] = self.embedded.start()
            typer.echo(f"embedded broker: {self.embedded.url} (data in {settings.home}/)")
        environ.setdefault("CRISPER_DATABASE_URL", settings.resolved_database_url())
        self.crisper.store.create_all()
        typer.echo(f"database: {environ['CRISPER_DATABASE_URL']}")
        if self.stop.is_set():
            return
        opts = self.options
        self.children["worker"] = _spawn(
            "worker", "--concurrency", str(opts.concurrency), "--pool", opts.pool)
        with _sigint_ignored():  # the scheduler stops when told, after the workers drained
            self.children["scheduler"] = _spawn("scheduler")
        if opts.api_port:
            # one process: a local instance, often on SQLite (one writer at a time)
            self.children["api"] = _spawn(
                "api", "--host", opts.api_host, "--port", str(opts.api_port), "--workers", "1")
            _wait_listening(opts.api_host, opts.api_port, self.children["api"])
            _announce_api(self.crisper, opts.api_host, opts.api_port)
        types = ", ".join(self.crisper.registry.names())
        typer.secho(
            f"\nCrisper is up. Job types: {types}\n"
            "In another terminal (same folder):\n"
            "  crisper submit demo.countdown seconds=10 --wait\n"
            "  crisper jobs ls\n"
            f"Ctrl-C stops everything (running jobs get {opts.drain_seconds:g} s to finish).\n",
            fg="green",
        )

    def _supervise(self) -> int:
        while not self.stop.wait(0.5):
            for name, child in self.children.items():
                if child.poll() is not None:
                    say(f"the {name} exited with code {child.returncode}; stopping everything")
                    return 1
            self._keep_broker_up()
        return 0

    def _keep_broker_up(self) -> None:
        """Restart the embedded broker when it dies; the workers reconnect to the same port."""
        if self.embedded is None or time.monotonic() < self._broker_retry_at:
            return
        code = self.embedded.exit_code()
        if code is None:
            return
        if self._broker_failures == 0:
            say(f"the embedded broker exited (code {code}); restarting it on the same port")
        try:
            self.embedded.restart()
        except ConfigurationError as exc:
            delay = BROKER_RESTART_DELAYS[min(self._broker_failures + 1,
                                              len(BROKER_RESTART_DELAYS) - 1)]
            self._broker_failures += 1
            self._broker_retry_at = time.monotonic() + delay
            say(f"{exc}; trying again in {delay:g} s")
            return
        self._broker_failures = 0
        say(f"the embedded broker was restarted: {self.embedded.url}")

    def _stop_all(self) -> None:
        if "api" in self.children:
            self._stop("api", STOP_WAIT_SECONDS)
        if "worker" in self.children:
            self._drain_worker()
        if "scheduler" in self.children:
            self._stop("scheduler", STOP_WAIT_SECONDS)
        if self.embedded:
            self.embedded.stop()

    def _drain_worker(self) -> None:
        drain = self.options.drain_seconds
        if self.children["worker"].poll() is None:
            say(f"stopping the worker: running jobs get up to {drain:g} s to finish "
                "(Ctrl-C again stops it at once)")
        if self._stop("worker", drain, cold=False):
            return
        say(f"the {drain:g} s drain ran out with jobs still running; stopping the worker cold "
            "(its interrupted jobs are rescued when Crisper starts again)")
        self._stop("worker", STOP_WAIT_SECONDS, cold=True)

    def _stop(self, name: str, seconds: float, *, cold: bool = False) -> bool:
        """Signal a child and wait; SIGKILL it if it is still there (unless a warm drain)."""
        child = self.children[name]
        if child.poll() is None:
            child.send_signal(signal.SIGQUIT if cold else signal.SIGTERM)
        if _wait(child, seconds, self.hurry if name == "worker" and not cold else None):
            return True
        if name == "worker" and not cold:
            return False
        child.kill()
        child.wait()
        return True


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    """A `crisper` command as a child that gets SIGTERM if `up` itself is killed."""
    return subprocess.Popen([sys.executable, "-m", "crisper", *args],
                            preexec_fn=die_with_parent)


def _wait(child: subprocess.Popen[bytes], seconds: float, hurry: threading.Event | None) -> bool:
    deadline = time.monotonic() + seconds
    while child.poll() is None:
        if time.monotonic() >= deadline or (hurry is not None and hurry.is_set()):
            return False
        time.sleep(0.1)
    return True


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Children started inside inherit SIGINT ignored (a terminal's Ctrl-C then skips them)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _wait_listening(host: str, port: int, child: subprocess.Popen[bytes],
                    timeout: float = API_START_SECONDS) -> None:
    """Until the API accepts connections (so "up" means up), it exits, or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.poll() is None:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)


def _announce_api(crisper: Crisper, host: str, port: int) -> None:
    """On loopback, make a fresh local admin key (revoking the last one) and say how to use it."""
    url = f"http://{host}:{port}"
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"API: {url} (create a key with `crisper keys create --tenant T`); "
                   f"dashboard: {url}/dashboard/")
        return
    from crisper.keys import KeyService
    from crisper.service import DEFAULT_TENANT

    keys = KeyService(crisper.store)
    for old in keys.list(name=LOCAL_KEY_NAME, include_revoked=False):
        keys.revoke(old.id)
    new = keys.create(DEFAULT_TENANT, ["read", "write", "admin"], LOCAL_KEY_NAME)
    typer.echo(f"API: {url} (docs at {url}/docs); a local admin key for it:\n"
               f"  export CRISPER_URL={url} CRISPER_API_KEY={new.secret}\n"
               f"Dashboard: {url}/dashboard/ (log in with that key)")
