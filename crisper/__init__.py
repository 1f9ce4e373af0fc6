"""Crisper: durable, truthful jobs on Celery."""

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
    WorkflowBusy,
    WorkflowNotFound,
)
from crisper.handle import JobHandle
from crisper.registry import JobType
from crisper.retention import Retention
from crisper.retry import Retry
from crisper.service import SubmitRequest
from crisper.settings import Settings
from crisper.states import JobState
from crisper.workflows import Workflow

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
    "Workflow",
    "WorkflowBusy",
    "WorkflowNotFound",
]
