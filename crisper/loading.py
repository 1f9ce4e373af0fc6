"""Find the user's Crisper app from `--app module[:attribute]`, like `celery -A`."""

from __future__ import annotations

import importlib
import os
import sys

from crisper.app import Crisper
from crisper.errors import ConfigurationError

DEFAULT_APP = "crisper.contrib.demo"


def load_app(spec: str | None) -> Crisper:
    spec = spec or os.environ.get("CRISPER_APP") or DEFAULT_APP
    module_name, _, attribute = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import app module {module_name!r}: {exc}") from exc
    if attribute:
        found = getattr(module, attribute, None)
        if not isinstance(found, Crisper):
            raise ConfigurationError(f"{spec!r} is not a Crisper app")
        return found
    apps = [v for v in vars(module).values() if isinstance(v, Crisper)]
    if len(apps) != 1:
        raise ConfigurationError(
            f"module {module_name!r} holds {len(apps)} Crisper apps; name one: {module_name}:NAME")
    return apps[0]
