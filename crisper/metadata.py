"""Job metadata: a few short string pairs per job, searchable by exact match. Pure checks."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from crisper.errors import InvalidRequest
from crisper.names import text_problem

MAX_ENTRIES = 16
MAX_VALUE = 200
KEY_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
KEY_RULE = "1-64 characters: ASCII letters, digits and _ . -, not starting with . or -"


def metadata_problem(meta: Any) -> tuple[str, str] | None:
    """(where, why) the metadata is refused, or None: a dict of at most 16 string pairs."""
    if not isinstance(meta, Mapping):
        return "metadata", "must be an object of text keys and text values"
    if len(meta) > MAX_ENTRIES:
        return "metadata", f"at most {MAX_ENTRIES} entries, got {len(meta)}"
    for key, value in meta.items():
        if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
            return "metadata", f"key {key!r} is not allowed ({KEY_RULE})"
        if not isinstance(value, str):
            return f"metadata.{key}", "must be text"
        problem = text_problem(value, MAX_VALUE)
        if problem is not None:
            return f"metadata.{key}", problem
    return None


def parse_pairs(pairs: Iterable[str], sep: str, field: str = "meta") -> dict[str, str]:
    """'key<sep>value' strings (CLI --meta k=v, HTTP ?meta=k:v) -> a filter dict;
    InvalidRequest naming `field` when one is not a pair or not valid metadata."""
    found: dict[str, str] = {}
    for pair in pairs:
        key, got, value = pair.partition(sep)
        if not got:
            raise InvalidRequest(field, f"{pair!r}: write it as key{sep}value")
        found[key] = value
    problem = metadata_problem(found)
    if problem is not None:
        raise InvalidRequest(field, f"{problem[0]}: {problem[1]}")
    return found
