"""The OpenAPI document, with the submit body narrowed to this app's job types.

FastAPI knows only the generic body ({type: str, params: object}); the app knows each job
type's parameter schema. Replacing the body by one variant per type lets clients (and the
schema fuzzer) see exactly which submissions are valid.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from crisper.bodies import NO_NUL

if TYPE_CHECKING:
    from crisper.app import Crisper

BODY = "SubmitBody"


def _component_name(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", "-".join(parts))


def _rewrite_refs(node: Any, prefix: str) -> Any:
    if isinstance(node, dict):
        return {k: (f"#/components/schemas/{_component_name(prefix, v.rsplit('/', 1)[1])}"
                    if k == "$ref" and isinstance(v, str) and v.startswith("#/$defs/")
                    else _rewrite_refs(v, prefix)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite_refs(v, prefix) for v in node]
    return node


def _no_nul(node: Any) -> Any:
    """Every string in a params schema, marked as unable to hold NUL (the API refuses those)."""
    if isinstance(node, dict):
        out = {k: _no_nul(v) for k, v in node.items()}
        if out.get("type") == "string" and "pattern" not in out and "enum" not in out:
            out["pattern"] = NO_NUL
        return out
    if isinstance(node, list):
        return [_no_nul(v) for v in node]
    return node


def narrow_submit_body(schema: dict[str, Any], crisper: Crisper) -> None:
    components = schema.get("components", {}).get("schemas", {})
    body = components.get(BODY)
    types = sorted(crisper.registry, key=lambda t: t.name)
    queues = crisper.declared_queues()
    if body is None or not types:
        return
    variants = []
    for job_type in types:
        params = _no_nul(copy.deepcopy(job_type.json_schema()))
        prefix = _component_name("params", job_type.name)
        for name, definition in params.pop("$defs", {}).items():
            components[_component_name(prefix, name)] = _rewrite_refs(definition, prefix)
        variant = copy.deepcopy(body)
        variant["title"] = f"Submit {job_type.name}"
        variant["properties"]["type"] = {"type": "string", "const": job_type.name}
        variant["properties"]["params"] = _rewrite_refs(params, prefix)
        variant["properties"]["queue"] = {
            "anyOf": [{"type": "string", "enum": queues}, {"type": "null"}],
            "description": "a declared queue; default: the job type's own"}
        if params.get("required"):
            variant["required"] = sorted({*variant.get("required", []), "params"})
        name = _component_name("Submit", job_type.name)
        components[name] = variant
        variants.append({"$ref": f"#/components/schemas/{name}"})
    components[BODY] = {"title": BODY, "oneOf": variants,
                        "description": "a job to submit: one variant per registered job type"}


def problem_422s(schema: dict[str, Any]) -> None:
    """Every 422 as what it is, a problem+json document: FastAPI documents its automatic
    ones as its own validation body, which this API never sends (see crisper.api.problems)."""
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for operations in schema.get("paths", {}).values():
        for op in operations.values():
            answer = op.get("responses", {}).get("422")
            if answer is not None:
                answer["content"] = copy.deepcopy(problem)
                answer["description"] = "Unprocessable Content: the problem names each field"
    components = schema.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)


def install(api: FastAPI, crisper: Crisper) -> None:
    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            schema = get_openapi(title=api.title, version=api.version,
                                 description=api.description, routes=api.routes)
            narrow_submit_body(schema, crisper)
            problem_422s(schema)
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
