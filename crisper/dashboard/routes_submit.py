"""Submit a job from the browser: a form built from the job type's parameter schema.

The options are checked by the API's own request model and the params by the job type, so
the messages next to the fields are the HTTP API's 422 messages.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from crisper import monitor
from crisper.bodies import SubmitBody
from crisper.dashboard import forms
from crisper.dashboard.render import base_of, render
from crisper.dashboard.routes_pages import Reader, acting, crisper_of
from crisper.dashboard.session import Viewer
from crisper.errors import DuplicateJob, InvalidParams, InvalidRequest, UnknownJobType
from crisper.service import SubmitRequest

router = APIRouter()
PARAM = "param."  # form names of params carry this prefix, so no param shadows an option
OPTIONS = ("queue", "priority", "delay", "tags")


def _page(request: Request, who: Viewer, type_name: str, status: int = 200,
          values: dict[str, str] | None = None, errors: dict[str, str] | None = None,
          general: list[str] | None = None) -> Response:
    types = monitor.job_types(crisper_of(request).settings, crisper_of(request).registry)
    chosen = next((t for t in types if t["name"] == type_name), None)
    fields = forms.fields_of(chosen["params"]) if chosen else []
    return render(request, "submit.html", who, status=status, page="submit", types=types,
                  chosen=chosen, fields=fields, values=values, errors=errors or {},
                  general=general or [], param_prefix=PARAM)


@router.get("/submit")
def submit_form(request: Request, who: Reader, type: str = "") -> Response:
    return _page(request, who, type)


def _options(form: dict[str, str]) -> dict[str, Any]:
    """The submit options the form filled in, numbers read as numbers."""
    body: dict[str, Any] = {}
    for name, kind in (("queue", "string"), ("priority", "integer"), ("delay", "number")):
        raw = form.get(name, "").strip()
        if raw:
            body[name] = forms.scalar(kind, raw)
    tags = [t.strip() for t in form.get("tags", "").split(",") if t.strip()]
    if tags:
        body["tags"] = tags
    body["hold"] = form.get("hold") not in (None, "", "off")
    return body


@router.post("/submit")
async def submit(request: Request) -> Response:
    who = await acting(request, "write")
    raw = await request.form()
    form = {k: v for k, v in raw.items() if isinstance(v, str)}
    return await run_in_threadpool(_submit, request, who, form)  # the core is synchronous


def _submit(request: Request, who: Viewer, form: dict[str, str]) -> Response:
    type_name = form.get("type", "")
    crisper = crisper_of(request)
    if type_name not in crisper.registry:
        return _page(request, who, "", 422, form,
                     general=[str(UnknownJobType(type_name, crisper.registry.names()))])
    job_type = crisper.registry.get(type_name)
    fields = forms.fields_of(job_type.json_schema())
    params, json_errors = forms.params_from_form(
        fields, {k.removeprefix(PARAM): v for k, v in form.items() if k.startswith(PARAM)})
    errors = {PARAM + k: v for k, v in json_errors.items()}
    general: list[str] = []
    try:  # the params, as the API's submit checks them
        job_type.validate(params)
    except InvalidParams as exc:
        by_field, general = forms.field_errors(exc.errors, {f.name for f in fields})
        errors.update({PARAM + k: v for k, v in by_field.items() if PARAM + k not in errors})
    try:  # the options, with the API's own request model
        body = SubmitBody.model_validate({"type": type_name, "params": params, **_options(form)})
    except ValidationError as exc:
        opt_errors, more = forms.field_errors(
            [{"loc": e["loc"], "msg": e["msg"]} for e in exc.errors()], set(OPTIONS))
        errors.update(opt_errors)
        general += more
    if errors or general:
        return _page(request, who, type_name, 422, form, errors, general)
    try:
        record = crisper.jobs.submit(SubmitRequest(
            type=body.type, params=body.params, queue=body.queue, priority=body.priority,
            delay=body.delay, hold=body.hold, tags=body.tags, tenant=who.tenant))
    except InvalidParams as exc:  # checked above; kept for a type whose checks are not pure
        by_field, general = forms.field_errors(exc.errors, {f.name for f in fields})
        return _page(request, who, type_name, 422, form,
                     {PARAM + k: v for k, v in by_field.items()}, general)
    except InvalidRequest as exc:  # e.g. a queue nobody declared: shown by its field
        field = exc.field.split(".")[0]
        if field in OPTIONS:
            return _page(request, who, type_name, 422, form, {field: str(exc)})
        return _page(request, who, type_name, 422, form, general=[str(exc)])
    except DuplicateJob as exc:
        return _page(request, who, type_name, 409, form, general=[str(exc)])
    return RedirectResponse(f"{base_of(request)}/jobs/{record.id}?done=submit", status_code=303)
