"""The submit form: fields from a job type's parameter JSON Schema, and form values back to params.

Pure functions. Values are converted only as far as the form's text demands (a number field's
text to a number); everything else is left to the job type's own validation, so the messages
shown next to the fields are the ones the HTTP API answers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SCALARS = ("integer", "number", "string", "boolean")
_INT = re.compile(r"^[+-]?\d+$")


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    kind: str  # integer | number | string | boolean | choice | json
    required: bool
    default: Any = None
    has_default: bool = False
    choices: tuple[Any, ...] = ()
    nullable: bool = False
    description: str = ""

    @property
    def initial(self) -> str:
        """The text the empty form shows: the default, as the user would type it."""
        if not self.has_default or self.default is None:
            return ""
        if self.kind == "json":
            return json.dumps(self.default)
        return str(self.default)


def _kind(schema: Mapping[str, Any]) -> tuple[str, bool, tuple[Any, ...]]:
    """(kind, nullable, choices) of one property's schema."""
    if "enum" in schema:
        return "choice", None in schema["enum"], tuple(schema["enum"])
    if "const" in schema:
        return "choice", False, (schema["const"],)
    options = schema.get("anyOf")
    if isinstance(options, list):
        nullable = any(o.get("type") == "null" for o in options)
        rest = [o for o in options if o.get("type") != "null"]
        if len(rest) == 1:
            kind, _, choices = _kind(rest[0])
            return kind, nullable, choices
        return "json", nullable, ()
    kind = str(schema.get("type"))
    if kind in SCALARS:
        return kind, False, ()
    return "json", False, ()


def fields_of(schema: Mapping[str, Any]) -> list[Field]:
    """One form field per parameter, in the function signature's order."""
    required = set(schema.get("required", ()))
    out = []
    for name, prop in (schema.get("properties") or {}).items():
        kind, nullable, choices = _kind(prop)
        out.append(Field(name=name, label=str(prop.get("title") or name), kind=kind,
                         required=name in required, default=prop.get("default"),
                         has_default="default" in prop, choices=choices, nullable=nullable,
                         description=str(prop.get("description") or "")))
    return out


def params_from_form(fields: list[Field], form: Mapping[str, str]
                     ) -> tuple[dict[str, Any], dict[str, str]]:
    """(params, errors by field) from submitted form text; errors only for unreadable JSON."""
    params: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in fields:
        raw = form.get(f.name)
        if f.kind == "boolean":
            params[f.name] = raw is not None and raw not in ("", "false", "off", "0")
            continue
        if raw is None or raw.strip() == "":
            if f.required and f.nullable:
                params[f.name] = None
            continue  # absent: the default applies, or validation says it is required
        if f.kind == "json":
            try:
                params[f.name] = json.loads(raw)
            except ValueError as exc:
                errors[f.name] = f"not valid JSON: {exc}"
            except RecursionError:  # the parser's own depth limit
                errors[f.name] = "nested too deeply"
        elif f.kind == "choice":
            params[f.name] = next((c for c in f.choices if str(c) == raw), raw)
        else:
            params[f.name] = scalar(f.kind, raw.strip() if f.kind != "string" else raw)
    return params, errors


def scalar(kind: str, raw: str) -> Any:
    """A number field's text as a number when it reads as one; otherwise the text itself."""
    if kind == "integer" and _INT.match(raw):
        return int(raw)
    if kind == "number":
        if _INT.match(raw):
            return int(raw)
        try:
            return float(raw)
        except ValueError:
            return raw
    return raw


def field_errors(errors: list[dict[str, Any]], names: set[str]
                 ) -> tuple[dict[str, str], list[str]]:
    """Validation errors as {field: message} for known fields, and the rest as sentences."""
    by_field: dict[str, str] = {}
    general: list[str] = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ()) if p != "params"]
        msg = str(e.get("msg", "invalid"))
        if loc and loc[0] in names:
            by_field.setdefault(loc[0], msg if len(loc) == 1 else f"{'.'.join(loc[1:])}: {msg}")
        else:
            general.append(f"{'.'.join(loc) or 'params'}: {msg}")
    return by_field, general
