"""Crisper's exceptions: one root, a small tree, each docstring its default message.

    CrisperError
    ├── ConfigurationError        settings or app loading are wrong
    ├── JobNotFound               an id that no job has (never "pending")
    ├── UnknownJobType            a type name nobody registered
    ├── InvalidParams             params that fail the job type's schema
    ├── InvalidRequest            a submit option or schedule field that is not valid
    │   └── UnknownQueue          a queue name that is not declared (or not allowed)
    ├── InvalidTransition         a lifecycle action the job's state does not allow
    │   └── NotControlled         retry/start asked of an observed Celery task
    ├── ConcurrentChange          the job changed state while the action ran; try again
    ├── DuplicateJob              a unique key already held by an active job
    ├── ScheduleNotFound          a schedule name that no schedule has
    ├── WorkflowNotFound          an id that no workflow has
    ├── WorkflowBusy              a workflow action its nodes' states do not allow
    ├── StoreUnavailable          the database cannot be reached
    ├── BrokerUnavailable         the broker cannot be reached
    ├── AccessDenied              an API key is missing, unknown or revoked
    │   └── MissingScope          a valid key that lacks a scope
    ├── KeyNotFound               an API key id that no key has
    ├── BatchNotFound             a batch id that no batch (of this tenant) has
    ├── WebhookNotFound           a subscription or delivery id that none has
    ├── OutboundRefused           an outbound URL whose address is not allowed
    └── JobInterrupted            raised inside a job to stop it
        └── Cancelled             the job was asked to cancel

Each class states, once, how it travels: its HTTP `status`, its problem `kind` (the
`urn:crisper:problem:<kind>` type), its CLI `exit_code`, and `members`, the problem members
(name -> attribute) the API sends and the client rebuilds the exception from. Every class
declares its own `kind`; api/problems.py, cli/main.py and client.py only look these up.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Self


class CrisperError(Exception):
    """Something went wrong in Crisper."""

    status: ClassVar[int] = 400
    kind: ClassVar[str] = "bad-request"
    exit_code: ClassVar[int] = 1
    members: ClassVar[Mapping[str, str]] = {}

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0])

    def problem_members(self) -> dict[str, Any]:
        """The extension members of this error's HTTP problem (besides type, status, detail)."""
        return {name: getattr(self, attribute) for name, attribute in self.members.items()}

    @classmethod
    def from_problem(cls, detail: str, body: Mapping[str, Any]) -> Self:
        """The error again, from its problem's detail and members (the client's side)."""
        error = cls.__new__(cls)
        Exception.__init__(error, detail)
        for name, attribute in cls.members.items():
            setattr(error, attribute, body.get(name))
        return error


def error_classes(root: type[CrisperError] = CrisperError) -> Iterator[type[CrisperError]]:
    """`root` and every subclass of it, however deep (a new class cannot be left out)."""
    yield root
    for sub in root.__subclasses__():
        yield from error_classes(sub)


def error_class_for(kind: str) -> type[CrisperError] | None:
    """The error class whose problem type is `kind`, if any."""
    return next((c for c in error_classes() if c.kind == kind), None)


class ConfigurationError(CrisperError):
    """Crisper is not configured correctly."""

    kind = "configuration-error"
    exit_code = 8


class JobNotFound(CrisperError):
    """No job has that id."""

    status, kind, exit_code = 404, "job-not-found", 5
    members = {"job_id": "job_id"}

    def __init__(self, job_id: object) -> None:
        self.job_id = str(job_id)
        super().__init__(f"job {job_id} not found")


class UnknownJobType(CrisperError):
    """No job type has that name."""

    status, kind, exit_code = 422, "unknown-job-type", 2
    members = {"job_type": "name", "known_types": "known"}

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = sorted(known)
        listing = ", ".join(self.known) if self.known else "none registered"
        super().__init__(f"unknown job type {name!r}; known: {listing}")


class InvalidParams(CrisperError):
    """The params do not match the job type's parameters."""

    status, kind, exit_code = 422, "invalid-params", 2
    members = {"job_type": "job_type"}

    def __init__(self, job_type: str, errors: list[dict[str, Any]]) -> None:
        self.job_type = job_type
        self.errors = errors
        details = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(params)'}: {e['msg']}" for e in errors
        )
        super().__init__(f"invalid params for {job_type!r}: {details}")

    def problem_members(self) -> dict[str, Any]:
        """Error paths start at `params`, as in the request body."""
        errors = [{"loc": ["params", *e["loc"]], "msg": e["msg"], "type": e.get("type", "")}
                  for e in self.errors]
        return {**super().problem_members(), "errors": errors}

    @classmethod
    def from_problem(cls, detail: str, body: Mapping[str, Any]) -> Self:
        error = super().from_problem(detail, body)
        error.errors = [{**e, "loc": list(e.get("loc", []))[1:]} for e in body.get("errors", [])]
        return error


class InvalidRequest(CrisperError):
    """A field of the request is not valid."""

    status, kind, exit_code = 422, "invalid-request", 2
    members = {"field": "field", "reason": "reason"}

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}")

    def problem_members(self) -> dict[str, Any]:
        return {**super().problem_members(),
                "errors": [{"loc": [self.field], "msg": str(self), "type": "value_error"}]}

    @classmethod
    def from_problem(cls, detail: str, body: Mapping[str, Any]) -> Self:
        """Also from the API's own request validation, whose first error names the field."""
        error = super().from_problem(detail, body)
        if error.field is None:
            first = (body.get("errors") or [{}])[0]
            loc = [str(part) for part in first.get("loc", [])]
            error.field = ".".join(loc[1:] if loc[:1] in (["body"], ["query"]) else loc)
            error.reason = str(first.get("msg", detail))
        return error


class UnknownQueue(InvalidRequest):
    """The queue is not declared, or its name is not allowed."""

    kind = "unknown-queue"
    members = {**InvalidRequest.members, "known_queues": "known"}

    def __init__(self, field: str, message: str, known: list[str]) -> None:
        self.known = sorted(known)
        super().__init__(field, message)


class InvalidTransition(CrisperError):
    """The job's state does not allow that action."""

    status, kind, exit_code = 409, "invalid-transition", 6
    members = {"job_id": "job_id", "state": "state", "action": "action",
               "allowed_from": "allowed_from"}

    def __init__(self, job_id: object, state: str, action: str, allowed_from: list[str]) -> None:
        self.job_id = str(job_id)
        self.state = state
        self.action = action
        self.allowed_from = allowed_from
        super().__init__(
            f"job {job_id} is {state}; only {' or '.join(allowed_from)} jobs can be {action}"
        )


class NotControlled(InvalidTransition):
    """The job is an observed Celery task: Crisper records it but does not run it."""

    kind = "not-controlled"

    def __init__(self, job_id: object, action: str) -> None:
        self.job_id = str(job_id)
        self.state = "observed"
        self.action = action
        self.allowed_from: list[str] = []
        CrisperError.__init__(
            self, f"job {job_id} is an observed Celery task, which Crisper records but does "
            f"not control: it cannot be {action} (cancel sends Celery's revoke); move the task "
            "to @crisper.job to steer it")


class ConcurrentChange(CrisperError):
    """The job changed state while the action ran; read it again and retry the action."""

    status, kind, exit_code = 409, "concurrent-change", 6
    members = {"job_id": "job_id"}

    def __init__(self, job_id: object) -> None:
        self.job_id = str(job_id)
        super().__init__(f"job {job_id} changed state concurrently; try again")


class DuplicateJob(CrisperError):
    """An active job already holds this unique key."""

    status, kind, exit_code = 409, "duplicate-job", 6
    members = {"job_id": "existing", "unique_key": "unique_key"}

    def __init__(self, unique_key: str, existing: object,
                 advice: str = "submit with on_duplicate='return' to get it instead") -> None:
        self.unique_key = unique_key
        self.existing = str(existing)
        super().__init__(f"job {existing} is already active with unique key {unique_key!r}; "
                         f"{advice}")


class ScheduleNotFound(CrisperError):
    """No schedule has that name."""

    status, kind, exit_code = 404, "schedule-not-found", 5
    members = {"name": "name"}

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"schedule {name!r} not found")


class WorkflowNotFound(CrisperError):
    """No workflow has that id."""

    status, kind, exit_code = 404, "workflow-not-found", 5
    members = {"workflow_id": "workflow_id"}

    def __init__(self, workflow_id: object) -> None:
        self.workflow_id = str(workflow_id)
        super().__init__(f"workflow {workflow_id} not found")


class WorkflowBusy(CrisperError):
    """The workflow's nodes are not in states that allow that action."""

    status, kind, exit_code = 409, "workflow-busy", 6
    members = {"workflow_id": "workflow_id"}

    def __init__(self, workflow_id: object, why: str) -> None:
        self.workflow_id = str(workflow_id)
        super().__init__(f"workflow {workflow_id}: {why}")


class StoreUnavailable(CrisperError):
    """The database is unavailable; try again when it is back."""

    status, kind, exit_code = 503, "database-unavailable", 7


class BrokerUnavailable(CrisperError):
    """The broker is unavailable; the job is stored and will be dispatched when it is back."""

    status, kind, exit_code = 503, "broker-unavailable", 7


class AccessDenied(CrisperError):
    """The API key is missing, unknown or revoked."""

    status, kind, exit_code = 401, "unauthorized", 9


class MissingScope(AccessDenied):
    """The API key is valid but lacks a scope this request needs."""

    status, kind = 403, "missing-scope"
    members = {"scope": "scope"}

    def __init__(self, message: str | None = None, *, scope: str) -> None:
        self.scope = scope
        super().__init__(message)


class KeyNotFound(CrisperError):
    """No API key has that id."""

    status, kind, exit_code = 404, "key-not-found", 5


class BatchNotFound(CrisperError):
    """No batch has that id."""

    status, kind, exit_code = 404, "batch-not-found", 5
    members = {"batch_id": "batch_id"}

    def __init__(self, batch_id: object) -> None:
        self.batch_id = str(batch_id)
        super().__init__(f"batch {batch_id} not found")


class WebhookNotFound(CrisperError):
    """No subscription or delivery has that id."""

    status, kind, exit_code = 404, "webhook-not-found", 5
    members = {"id": "id"}

    def __init__(self, what: str, id: object) -> None:
        self.id = str(id)
        super().__init__(f"{what} {id} not found")


class OutboundRefused(CrisperError):
    """An outbound request to an address that is not allowed (loopback, private, metadata)."""

    status, kind, exit_code = 422, "outbound-refused", 2
    members = {"url": "url"}

    def __init__(self, url: str, why: str, *, allowable: bool = False) -> None:
        self.url = url
        hint = " (name the address in CRISPER_OUTBOUND_ALLOW to allow it)" if allowable else ""
        super().__init__(f"refused to call {url}: {why}{hint}")


class JobInterrupted(CrisperError):
    """The job was interrupted."""

    kind = "job-interrupted"


class Cancelled(JobInterrupted):
    """The job was cancelled."""

    kind, exit_code = "cancelled", 3
