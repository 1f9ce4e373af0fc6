"""Crisper: durable, truthful jobs on Celery.

Names are imported on first use, so that `import crisper.client` (a remote caller) does not
load the store, the engine and their libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crisper.app import Crisper
    from crisper.client import AsyncClient, Client
    from crisper.engine.context import JobContext
    from crisper.errors import (
        AccessDenied,
        BrokerUnavailable,
        Cancelled,
        ConfigurationError,
        CrisperError,
        DuplicateJob,
        InvalidParams,
        InvalidTransition,
        JobNotFound,
        StoreUnavailable,
        UnknownJobType,
    )
    from crisper.handle import JobHandle
    from crisper.registry import JobType
    from crisper.retention import Retention
    from crisper.retry import Retry
    from crisper.service import SubmitRequest
    from crisper.settings import Settings
    from crisper.states import JobState

_HOMES: dict[str, str] = {
    "AccessDenied": "crisper.errors",
    "AsyncClient": "crisper.client",
    "BrokerUnavailable": "crisper.errors",
    "Cancelled": "crisper.errors",
    "Client": "crisper.client",
    "ConfigurationError": "crisper.errors",
    "Crisper": "crisper.app",
    "CrisperError": "crisper.errors",
    "DuplicateJob": "crisper.errors",
    "InvalidParams": "crisper.errors",
    "InvalidTransition": "crisper.errors",
    "JobContext": "crisper.engine.context",
    "JobHandle": "crisper.handle",
    "JobNotFound": "crisper.errors",
    "JobState": "crisper.states",
    "JobType": "crisper.registry",
    "Retention": "crisper.retention",
    "Retry": "crisper.retry",
    "Settings": "crisper.settings",
    "StoreUnavailable": "crisper.errors",
    "SubmitRequest": "crisper.service",
    "UnknownJobType": "crisper.errors",
}

__all__ = [
    "AccessDenied",
    "AsyncClient",
    "BrokerUnavailable",
    "Cancelled",
    "Client",
    "ConfigurationError",
    "Crisper",
    "CrisperError",
    "DuplicateJob",
    "InvalidParams",
    "InvalidTransition",
    "JobContext",
    "JobHandle",
    "JobNotFound",
    "JobState",
    "JobType",
    "Retention",
    "Retry",
    "Settings",
    "StoreUnavailable",
    "SubmitRequest",
    "UnknownJobType",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'crisper' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
