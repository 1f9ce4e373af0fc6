"""Submit jobs inside Django's transaction: the job exists if and only if Django commits."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import transaction
from sqlalchemy.orm import Session

from crisper.app import Crisper
from crisper.contrib.django.connection import django_engine
from crisper.errors import ConfigurationError
from crisper.handle import JobHandle
from crisper.registry import JobType
from crisper.service import SubmitRequest


def submit(job_type: JobType | str, params: dict[str, Any] | None = None, *,
           crisper: Crisper | None = None, using: str = "default", **options: Any
           ) -> JobHandle:
    """Create a job in Django's current transaction on database `using`.

    The row is written on Django's own connection, marked "not yet sent"; once Django
    commits, an on_commit hook wakes a worker. If the process dies between the commit and
    that hook, the scheduler's relay sends the job: a committed job is never lost. A rollback
    leaves no job and no message. Outside `atomic()`, the row commits at once (autocommit).
    The app is `crisper`, else `settings.CRISPER["APP"]`.
    """
    name = job_type.name if isinstance(job_type, JobType) else job_type
    app = crisper if crisper is not None else _configured_app(job_type)
    request = SubmitRequest(type=name, params=params or {}, **options)
    with Session(django_engine(using)) as session:
        record = app.jobs.submit(request, session=session)
        session.flush()
    transaction.on_commit(partial(app.jobs.dispatch_committed, [record]), using=using)
    return JobHandle(app.jobs, record)


def _configured_app(job_type: JobType | str) -> Crisper:
    """`settings.CRISPER["APP"]`; a job type given must be one of its (a type does not hold
    its app: the registry sits below the app)."""
    from crisper.contrib.django.conf import get_app

    app = get_app()
    if isinstance(job_type, JobType) and (job_type.name not in app.registry
                                          or app.registry.get(job_type.name) is not job_type):
        raise ConfigurationError(f"job type {job_type.name!r} is not one of the app in "
                                 'settings.CRISPER["APP"]: pass crisper=')
    return app
