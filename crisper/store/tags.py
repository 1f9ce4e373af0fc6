"""Exact tag match on the JSON tags column: a tag is a value, never a pattern.

PostgreSQL asks for JSON containment (`tags @> '["x"]'`); SQLite looks through the list's
elements with json_each. No LIKE anywhere, so `%`, `_` and quotes in a tag are plain text.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Boolean, ColumnElement, String, bindparam
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.visitors import InternalTraversal


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
    return (f"({compiler.process(element.tags, **kw)} @> "
            f"CAST({compiler.process(element.as_json, **kw)} AS JSONB))")


@compiles(HasTag)
def _other(element: HasTag, compiler: Any, **kw: Any) -> str:
    return (f"EXISTS (SELECT 1 FROM json_each({compiler.process(element.tags, **kw)}) "
            f"WHERE json_each.value = {compiler.process(element.tag, **kw)})")
