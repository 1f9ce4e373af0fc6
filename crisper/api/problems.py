"""Errors -> HTTP, in one place: every error the API answers is RFC 9457 problem+json."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from crisper.errors import (
    AccessDenied,
    BrokerUnavailable,
    CrisperError,
    DuplicateJob,
    InvalidParams,
    InvalidRequest,
    InvalidTransition,
    JobNotFound,
    KeyNotFound,
    ScheduleNotFound,
    StoreUnavailable,
    UnknownJobType,
    UnknownQueue,
)

log = logging.getLogger(__name__)
MEDIA_TYPE = "application/problem+json"
URN = "urn:crisper:problem:"


def problem(status: int, detail: str, kind: str | None = None, instance: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {"type": f"{URN}{kind}" if kind else "about:blank",
            "title": HTTPStatus(status).phrase, "status": status, "detail": detail,
            "instance": instance, **extra}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def describe(exc: CrisperError) -> tuple[int, str, dict[str, Any]]:
    """(status, problem kind, extra members) for a Crisper error: pure, so it is unit-tested."""
    if isinstance(exc, JobNotFound):
        return 404, "job-not-found", {"job_id": exc.job_id}
    if isinstance(exc, KeyNotFound):
        return 404, "key-not-found", {}
    if isinstance(exc, UnknownJobType):
        return 422, "unknown-job-type", {"known_types": exc.known}
    if isinstance(exc, InvalidParams):
        errors = [{"loc": ["params", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                  for e in exc.errors]
        return 422, "invalid-params", {"errors": errors}
    if isinstance(exc, UnknownQueue):
        return 422, "unknown-queue", {"known_queues": exc.known, "errors": [
            {"loc": [exc.field], "msg": str(exc), "type": "value_error"}]}
    if isinstance(exc, InvalidRequest):
        return 422, "invalid-request", {"errors": [
            {"loc": [exc.field], "msg": str(exc), "type": "value_error"}]}
    if isinstance(exc, DuplicateJob):
        return 409, "duplicate-job", {"job_id": exc.existing, "unique_key": exc.unique_key}
    if isinstance(exc, ScheduleNotFound):
        return 404, "schedule-not-found", {}
    if isinstance(exc, InvalidTransition):
        return 409, "invalid-transition", {"job_id": exc.job_id, "state": exc.state,
                                           "allowed_from": exc.allowed_from}
    if isinstance(exc, AccessDenied):
        if exc.scope is not None:
            return 403, "missing-scope", {"scope": exc.scope}
        return 401, "unauthorized", {}
    if isinstance(exc, StoreUnavailable):
        return 503, "database-unavailable", {}
    if isinstance(exc, BrokerUnavailable):
        return 503, "broker-unavailable", {}
    return 400, "bad-request", {}


def _crisper_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CrisperError)
    status, kind, extra = describe(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": "5"}
    return problem(status, str(exc), kind, request.url.path, headers, **extra)


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
              for e in exc.errors()]
    if any(e["type"] == "json_invalid" for e in errors):
        return problem(400, "the request body is not valid JSON", "malformed-json",
                       request.url.path)
    sentence = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}"
                         for e in errors if e["loc"])
    return problem(422, sentence or "the request is invalid", "invalid-request",
                   request.url.path, errors=errors)


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no endpoint at {request.url.path}; see /docs for the API"
    elif exc.status_code == 400 and detail == "There was an error parsing the body":
        # FastAPI's answer when the JSON parser gives up (e.g. RecursionError on deep nesting)
        return problem(400, "the request body cannot be read: not JSON, or nested deeper than "
                       "any request may be", "malformed-json", request.url.path)
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    return problem(exc.status_code, detail, None, request.url.path, dict(exc.headers or {}))


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "an internal error occurred; the server log has the details",
                   "internal-error", request.url.path)


def install(app: FastAPI) -> None:
    app.add_exception_handler(CrisperError, _crisper_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problems an operation can answer."""
    from crisper.api.schemas import Problem

    schema = {"$ref": "#/components/schemas/Problem"}
    return {s: {"model": Problem, "description": HTTPStatus(s).phrase,
                "content": {MEDIA_TYPE: {"schema": schema}}} for s in statuses}
