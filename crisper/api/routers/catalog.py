"""/v1/types: the registered job types, their options and their parameters' JSON Schemas."""

from __future__ import annotations

from fastapi import APIRouter

from crisper import monitor
from crisper.api.auth import AppDep, Reader
from crisper.api.problems import responses
from crisper.api.schemas import JobTypeInfo

router = APIRouter(prefix="/v1", tags=["types"], responses=responses(401, 403, 500))


@router.get("/types", response_model=list[JobTypeInfo])
def job_types(crisper: AppDep, who: Reader) -> list[JobTypeInfo]:
    """What can be submitted: each type's name, queue, options and parameter schema."""
    return [JobTypeInfo(**t) for t in monitor.job_types(crisper.settings, crisper.registry)]
