"""The `crisper` command: thin adapters that parse, call the service layer, and print."""

from __future__ import annotations

from crisper.cli.main import app, main

__all__ = ["app", "main"]
