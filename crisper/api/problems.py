"""Errors -> HTTP, in one place: every error the API answers is RFC 9457 problem+json."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from crisper.errors import CrisperError

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
    """(status, problem kind, extra members) for a Crisper error: each class states its own."""
    return exc.status, exc.kind, exc.problem_members()


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
