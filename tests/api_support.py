"""Helpers for API tests: a real uvicorn server in a thread, and API keys to call it with."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from crisper.api import create_app
from crisper.app import Crisper
from crisper.embedded import free_port
from crisper.keys import KeyService
from crisper.settings import Settings
from tests.harness import wait_for


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run `app` on uvicorn on a free loopback port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    wait_for(lambda: server.started, 15, "the API server to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@contextmanager
def api_server(crisper: Crisper) -> Iterator[str]:
    with serve(create_app(crisper)) as url:
        yield url


def key(crisper: Crisper, tenant: str = "acme", scopes: str = "read,write,admin") -> str:
    """A fresh API key's secret for `tenant` with `scopes`."""
    return KeyService(crisper.store).create(tenant, scopes.split(",")).secret


@contextmanager
def other_app(settings: Settings, name: str = "other") -> Iterator[Crisper]:
    """A second Crisper app (other settings) whose pooled connections are closed afterwards."""
    crisper = Crisper(name, settings=settings)
    try:
        yield crisper
    finally:
        if "store" in crisper.__dict__:
            crisper.store.close()
