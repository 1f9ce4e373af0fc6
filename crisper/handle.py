"""A handle on one job for Python callers: its id, its last-read state, and a wait."""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from crisper.records import JobRecord
from crisper.states import JobState
from crisper.waiting import wait_for_end


class JobActions(Protocol):
    """What a handle asks of the job service: read one job again, and the three actions."""

    def get(self, job_id: object) -> JobRecord: ...

    def cancel(self, job_id: object) -> JobRecord: ...

    def retry(self, job_id: object) -> JobRecord: ...

    def start(self, job_id: object) -> JobRecord: ...


class JobHandle:
    """What submit() returns. `state` is as last read; refresh() or wait() read it again."""

    def __init__(self, service: JobActions, record: JobRecord) -> None:
        self._service = service
        self.record = record

    def __repr__(self) -> str:
        return f"<Job {self.record.type} {self.id} {self.state.value}>"

    @property
    def id(self) -> uuid.UUID:
        return self.record.id

    @property
    def state(self) -> JobState:
        return self.record.state

    @property
    def result(self) -> Any:
        return self.record.result

    @property
    def error(self) -> dict[str, Any] | None:
        return self.record.error

    def refresh(self) -> JobHandle:
        self.record = self._service.get(self.id)
        return self

    def wait(self, timeout: float | None = None, poll: float = 0.05) -> JobHandle:
        """Block until the job is succeeded, failed or cancelled; TimeoutError past `timeout`."""
        return wait_for_end(self.refresh, self.id, timeout, poll)

    def cancel(self) -> JobHandle:
        self.record = self._service.cancel(self.id)
        return self

    def retry(self) -> JobHandle:
        self.record = self._service.retry(self.id)
        return self

    def start(self) -> JobHandle:
        self.record = self._service.start(self.id)
        return self
