"""An app factory for `uvicorn --factory crisper.api.serve:app`: the app from CRISPER_APP."""

from __future__ import annotations

import gc

from fastapi import FastAPI

from crisper.api.app import create_app


def app() -> FastAPI:
    from crisper.loading import load_app

    return served(create_app(load_app(None)))


def served(api: FastAPI) -> FastAPI:
    """The app about to be served, with everything built so far out of the collector's reach.

    A full collection walks every tracked object, and a server holds hundreds of thousands
    that live as long as it does (modules, routes, schemas, the app's job types); each walk
    stalled the event loop for tens of milliseconds, which made the API's p99 (bench/
    http_submit.py, 32 clients: 101-109 ms before, 43-46 ms after, with no worker running;
    docs/benchmarks.md). `gc.freeze` moves them to a generation no collection visits; what
    requests create is collected as before.
    """
    gc.freeze()
    return api
