"""The in-process read API: jobs by filter, counts by state, workers and queues, no HTTP.

The HTTP API and the Python methods on `Crisper` (list_jobs, count_jobs, list_workers,
queue_stats) call these same functions, so both take the same filters and paginate alike.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from crisper.errors import InvalidRequest
from crisper.metadata import metadata_problem
from crisper.records import JobRecord
from crisper.states import JobState
from crisper.store import jobs as job_sql

if TYPE_CHECKING:
    from crisper.service import JobService
    from crisper.store import Store

MAX_PAGE = 500


@dataclass(frozen=True)
class JobPage:
    """One page of jobs, newest first; pass `next_cursor` as `before=` for the next one."""

    items: list[JobRecord]
    next_cursor: uuid.UUID | None


def job_filter(*, state: JobState | str | Iterable[JobState | str] = (),
               type: str | Iterable[str] = (), queue: str | Iterable[str] = (),
               tag: str | None = None, metadata: Mapping[str, str] | None = None,
               tenant: str | None = None, created_after: datetime | None = None,
               created_before: datetime | None = None,
               finished_after: datetime | None = None, finished_before: datetime | None = None,
               ) -> job_sql.JobFilter:
    """A filter from plain values: each of state/type/queue one value or several (any of);
    `metadata` pairs must all match exactly."""
    try:
        states = [JobState(s) for s in _many(state)]
    except ValueError:
        raise InvalidRequest(
            "state", f"unknown state in {state!r}; states: "
            f"{', '.join(s.value for s in JobState)}") from None
    problem = metadata_problem(metadata) if metadata else None
    if problem is not None:
        raise InvalidRequest(*problem)
    return job_sql.JobFilter(states=states, types=_many(type), queues=_many(queue),
                             metadata=tuple(sorted((metadata or {}).items())),
                             tenant=tenant, tag=tag, created_after=created_after,
                             created_before=created_before, finished_after=finished_after,
                             finished_before=finished_before)


def list_jobs(jobs: JobService, f: job_sql.JobFilter, *, before: object = None,
              limit: int = 50) -> JobPage:
    """A page of the jobs matching `f`, newest first (keyset on the time-ordered id)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest("limit", f"must be 1..{MAX_PAGE}, got {limit}")
    found = jobs.list_jobs(f, before=before, limit=limit)
    return JobPage(found, found[-1].id if len(found) == limit else None)


def count_jobs(store: Store, f: job_sql.JobFilter) -> dict[JobState, int]:
    """How many jobs match `f` in each state (every state present, zeros included)."""
    with store.read() as session:
        found = job_sql.count_matching(session, f)
    return {s: found.get(s.value, 0) for s in JobState}


def _many(value: JobState | str | Iterable[JobState | str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):  # a JobState is a str too
        return [JobState(value).value if isinstance(value, JobState) else value]
    return [v.value if isinstance(v, JobState) else str(v) for v in value]
