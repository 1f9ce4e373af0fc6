"""Crisper's exceptions: one root, a small tree, each docstring its default message.

    CrisperError
    ├── ConfigurationError        settings or app loading are wrong
    ├── JobNotFound               an id that no job has (never "pending")
    ├── UnknownJobType            a type name nobody registered
    ├── InvalidParams             params that fail the job type's schema
    ├── InvalidRequest            a submit option or schedule field that is not valid
    │   └── UnknownQueue          a queue name that is not declared (or not allowed)
    ├── InvalidTransition         a lifecycle action the job's state does not allow
    ├── DuplicateJob              a unique key already held by an active job
    ├── ScheduleNotFound          a schedule name that no schedule has
    ├── StoreUnavailable          the database cannot be reached
    ├── BrokerUnavailable         the broker cannot be reached
    ├── AccessDenied              an API key is missing, unknown, revoked or lacks a scope
    ├── KeyNotFound               an API key id that no key has
    └── JobInterrupted            raised inside a job to stop it
        └── Cancelled             the job was asked to cancel
"""

from __future__ import annotations

from typing import Any


class CrisperError(Exception):
    """Something went wrong in Crisper."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigurationError(CrisperError):
    """Crisper is not configured correctly."""


class JobNotFound(CrisperError):
    """No job has that id."""

    def __init__(self, job_id: object) -> None:
        self.job_id = str(job_id)
        super().__init__(f"job {job_id} not found")


class UnknownJobType(CrisperError):
    """No job type has that name."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = sorted(known)
        listing = ", ".join(self.known) if self.known else "none registered"
        super().__init__(f"unknown job type {name!r}; known: {listing}")


class InvalidParams(CrisperError):
    """The params do not match the job type's parameters."""

    def __init__(self, job_type: str, errors: list[dict[str, Any]]) -> None:
        self.job_type = job_type
        self.errors = errors
        details = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(params)'}: {e['msg']}" for e in errors
        )
        super().__init__(f"invalid params for {job_type!r}: {details}")


class InvalidRequest(CrisperError):
    """A field of the request is not valid."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class UnknownQueue(InvalidRequest):
    """The queue is not declared, or its name is not allowed."""

    def __init__(self, field: str, message: str, known: list[str]) -> None:
        self.known = sorted(known)
        super().__init__(field, message)


class InvalidTransition(CrisperError):
    """The job's state does not allow that action."""

    def __init__(self, job_id: object, state: str, action: str, allowed_from: list[str]) -> None:
        self.job_id = str(job_id)
        self.state = state
        self.action = action
        self.allowed_from = allowed_from
        super().__init__(
            f"job {job_id} is {state}; only {' or '.join(allowed_from)} jobs can be {action}"
        )


class DuplicateJob(CrisperError):
    """An active job already holds this unique key."""

    def __init__(self, unique_key: str, existing: object,
                 advice: str = "submit with on_duplicate='return' to get it instead") -> None:
        self.unique_key = unique_key
        self.existing = str(existing)
        super().__init__(f"job {existing} is already active with unique key {unique_key!r}; "
                         f"{advice}")


class ScheduleNotFound(CrisperError):
    """No schedule has that name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"schedule {name!r} not found")


class StoreUnavailable(CrisperError):
    """The database is unavailable; try again when it is back."""


class BrokerUnavailable(CrisperError):
    """The broker is unavailable; the job is stored and will be dispatched when it is back."""


class AccessDenied(CrisperError):
    """The API key is missing, unknown or revoked."""

    def __init__(self, message: str | None = None, *, scope: str | None = None) -> None:
        self.scope = scope  # set when the key is valid but lacks this scope
        super().__init__(message)


class KeyNotFound(CrisperError):
    """No API key has that id."""


class JobInterrupted(CrisperError):
    """The job was interrupted."""


class Cancelled(JobInterrupted):
    """The job was cancelled."""
