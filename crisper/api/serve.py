"""An app factory for `uvicorn --factory crisper.api.serve:app`: the app from CRISPER_APP."""

from __future__ import annotations

from fastapi import FastAPI

from crisper.api.app import create_app


def app() -> FastAPI:
    from crisper.loading import load_app

    return create_app(load_app(None))
