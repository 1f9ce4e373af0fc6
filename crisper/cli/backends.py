"""Where the job commands send their calls: this process's service, or a server's HTTP API.

Both answer with the same read models, so the commands print the same things either way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from crisper import monitor
from crisper.records import EventRecord, JobRecord, LogRecord
from crisper.service import SubmitRequest
from crisper.store.jobs import JobFilter

if TYPE_CHECKING:
    from crisper.app import Crisper
    from crisper.client import Client


class JobsBackend(Protocol):
    def submit(self, request: SubmitRequest) -> JobRecord: ...
    def get(self, job_id: object) -> JobRecord: ...
    def list_jobs(self, f: JobFilter, before: object, limit: int) -> list[JobRecord]: ...
    def events(self, job_id: object) -> list[EventRecord]: ...
    def logs(self, job_id: object) -> list[LogRecord]: ...
    def cancel(self, job_id: object) -> JobRecord: ...
    def retry(self, job_id: object, params: dict[str, Any] | None = None) -> JobRecord: ...
    def start(self, job_id: object) -> JobRecord: ...
    def types(self) -> list[dict[str, Any]]: ...


class LocalJobs:
    """The app's own service layer, on its database."""

    def __init__(self, crisper: Crisper) -> None:
        self.crisper = crisper
        self.service = crisper.jobs

    def submit(self, request: SubmitRequest) -> JobRecord:
        return self.service.submit(request)

    def get(self, job_id: object) -> JobRecord:
        return self.service.get(job_id)

    def list_jobs(self, f: JobFilter, before: object, limit: int) -> list[JobRecord]:
        return self.service.list_jobs(f, before=before, limit=limit)

    def events(self, job_id: object) -> list[EventRecord]:
        return self.service.events(job_id)

    def logs(self, job_id: object) -> list[LogRecord]:
        return self.service.logs(job_id)

    def cancel(self, job_id: object) -> JobRecord:
        return self.service.cancel(job_id)

    def retry(self, job_id: object, params: dict[str, Any] | None = None) -> JobRecord:
        return self.service.retry(job_id, params=params)

    def start(self, job_id: object) -> JobRecord:
        return self.service.start(job_id)

    def types(self) -> list[dict[str, Any]]:
        return monitor.job_types(self.crisper.settings, self.crisper.registry)


class RemoteJobs:
    """A Crisper API server, through crisper.Client (the key decides the tenant)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def submit(self, request: SubmitRequest) -> JobRecord:
        return self.client.submit(
            request.type, request.params, queue=request.queue, priority=request.priority,
            delay=request.delay, run_at=request.run_at, hold=request.hold,
            idempotency_key=request.idempotency_key, tags=request.tags,
            max_attempts=request.max_attempts, unique_key=request.unique_key,
            on_duplicate=request.on_duplicate, soft_time_limit=request.soft_time_limit,
            time_limit=request.time_limit, callback_url=request.callback_url,
        )

    def get(self, job_id: object) -> JobRecord:
        return self.client.get(job_id)

    def list_jobs(self, f: JobFilter, before: object, limit: int) -> list[JobRecord]:
        return self.client.list_jobs(states=f.states, types=f.types, queues=f.queues, tag=f.tag,
                                     metadata=dict(f.metadata), before=before, limit=limit)

    def events(self, job_id: object) -> list[EventRecord]:
        return self.client.events(job_id)

    def logs(self, job_id: object) -> list[LogRecord]:
        return self.client.logs(job_id)

    def cancel(self, job_id: object) -> JobRecord:
        return self.client.cancel(job_id)

    def retry(self, job_id: object, params: dict[str, Any] | None = None) -> JobRecord:
        return self.client.retry(job_id, params)

    def start(self, job_id: object) -> JobRecord:
        return self.client.start(job_id)

    def types(self) -> list[dict[str, Any]]:
        return self.client.types()
