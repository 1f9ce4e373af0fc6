"""Exact tag and metadata match on the JSON columns: a value, never a pattern.

PostgreSQL asks for JSON containment (`tags @> '["x"]'`); SQLite looks through the list's
elements with json_each. No LIKE anywhere, so `%`, `_` and quotes in a tag are plain text.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Boolean, ColumnElement, String, bindparam
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.visitors import InternalTraversal

from crisper.store.models import tagged


class HasTag(ColumnElement[bool]):
    """True where the JSON list `tags` holds exactly `tag`."""

    inherit_cache = True
    type = Boolean()
    _traverse_internals = [("tags", InternalTraversal.dp_clauseelement),
                           ("tag", InternalTraversal.dp_clauseelement),
                           ("as_json", InternalTraversal.dp_clauseelement)]

    def __init__(self, tags: ColumnElement[Any], tag: str) -> None:
        self.tags = tags
        self.tag = bindparam(None, tag, type_=String)
        self.as_json = bindparam(None, json.dumps([tag]), type_=String)


@compiles(HasTag, "postgresql")
def _postgresql(element: HasTag, compiler: Any, **kw: Any) -> str:
    """Containment, with the GIN index's predicate (only tagged jobs have entries) repeated,
    which a job holding the tag meets anyway."""
    tags = compiler.process(element.tags, **kw)
    return (f"({tags} @> CAST({compiler.process(element.as_json, **kw)} AS JSONB) "
            f"AND {tagged(tags)})")


@compiles(HasTag)
def _other(element: HasTag, compiler: Any, **kw: Any) -> str:
    return (f"EXISTS (SELECT 1 FROM json_each({compiler.process(element.tags, **kw)}) "
            f"WHERE json_each.value = {compiler.process(element.tag, **kw)})")


class HasMetadata(ColumnElement[bool]):
    """True where the JSON object `metadata` holds every given pair exactly."""

    inherit_cache = True
    type = Boolean()
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement),
                           ("as_json", InternalTraversal.dp_clauseelement),
                           ("pairs", InternalTraversal.dp_clauseelement_list)]

    def __init__(self, column: ColumnElement[Any], pairs: dict[str, str]) -> None:
        self.column = column
        self.as_json = bindparam(None, json.dumps(pairs, sort_keys=True), type_=String)
        # SQLite: (path, value) per pair; the key was validated, the path is still a parameter.
        self.pairs = [bindparam(None, v, type_=String) for k in sorted(pairs)
                      for v in (f'$."{k}"', pairs[k])]


@compiles(HasMetadata, "postgresql")
def _metadata_postgresql(element: HasMetadata, compiler: Any, **kw: Any) -> str:
    """Containment, which the GIN index (jsonb_path_ops, only jobs with metadata) answers:
    `@>` is strict, so the planner knows it implies the index's `metadata IS NOT NULL`."""
    return (f"({compiler.process(element.column, **kw)} @> "
            f"CAST({compiler.process(element.as_json, **kw)} AS JSONB))")


@compiles(HasMetadata)
def _metadata_other(element: HasMetadata, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    parts = [f"json_extract({column}, {compiler.process(path, **kw)}) = "
             f"{compiler.process(value, **kw)}"
             for path, value in zip(element.pairs[::2], element.pairs[1::2], strict=True)]
    return "(" + " AND ".join(parts or ["1 = 1"]) + ")"
