"""The rules for names users supply (queues, tags, schedule names, keys): pure, one home.

A queue name becomes a broker key (Redis) or queue (RabbitMQ), so it must match a safe
pattern and never name one of the broker's own keys; docs/flow-control.md states the rule.
Each check returns the reason a value is refused, or None; callers raise their own error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

QUEUE_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")  # whole name: fullmatch
QUEUE_RULE = ("1-64 characters: lower-case letters, digits, '_', '.', '-', "
              "starting with a letter or digit")
# The brokers' own keys and queues (Kombu's Redis transport, Celery's events and remote
# control, RabbitMQ's reserved names); a queue of that name would corrupt or steal them.
RESERVED_QUEUES = frozenset({"unacked", "unacked_index", "unacked_mutex"})
RESERVED_PREFIXES = ("_kombu.", "celeryev", "amq.")
RESERVED_SUFFIXES = (".pidbox",)

TAG_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_ .:/=@+#-]{0,99}")
TAG_RULE = ("1-100 characters: ASCII letters, digits, spaces and _ . : / = @ + # -, "
            "a letter, digit or _ first")
# A schedule's jobs carry the tag "schedule:<name>", and the name is a URL path segment.
SCHEDULE_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@+-]{0,89}")
SCHEDULE_RULE = ("1-90 characters: ASCII letters, digits and _ . : @ + -, "
                 "a letter, digit or _ first")
MAX_KEY = 300
# Free text that names something (idempotency and unique keys): printable, not blank.
_CONTROL = r"\x00-\x1f\x7f-\x9f"
KEY_PATTERN = re.compile(rf"[^{_CONTROL}]*[^\s{_CONTROL}][^{_CONTROL}]*")


def queue_problem(name: object) -> str | None:
    """Why `name` cannot be a queue, or None when it can."""
    if not isinstance(name, str) or not QUEUE_PATTERN.fullmatch(name):
        return f"{name!r} is not a valid queue name ({QUEUE_RULE})"
    if (name in RESERVED_QUEUES or name.startswith(RESERVED_PREFIXES)
            or name.endswith(RESERVED_SUFFIXES)):
        return f"{name!r} is reserved for the broker's own use"
    return None


def declared_queues(type_queues: Iterable[str], configured: Iterable[str],
                    default: str = "default") -> list[str]:
    """Every queue a submit may name: the job types', the configured ones and the default.

    The one place that says which queues exist; a further source (an adopted Celery app's
    routes) is one more argument here.
    """
    return sorted({default, *type_queues, *configured})


def unknown_queue_problem(name: str, known: Iterable[str]) -> str | None:
    """Why a submit may not name `name`: not valid, or not declared; None when it may."""
    problem = queue_problem(name)
    if problem is not None:
        return problem
    known = sorted(known)
    if name not in known:
        return (f"unknown queue {name!r}; known: {', '.join(known)} (declare others with a "
                "job type's queue= or the CRISPER_QUEUES setting)")
    return None


def tag_problem(tag: object) -> str | None:
    if not isinstance(tag, str) or not TAG_PATTERN.fullmatch(tag):
        return f"{tag!r} is not a valid tag ({TAG_RULE})"
    return None


def schedule_name_problem(name: object) -> str | None:
    if not isinstance(name, str) or not SCHEDULE_PATTERN.fullmatch(name):
        return f"{name!r} is not a valid schedule name ({SCHEDULE_RULE})"
    return None


def text_problem(value: object, max_length: int) -> str | None:
    """Why a free-text name (schedule name, idempotency or unique key) is refused, or None."""
    if not isinstance(value, str) or not value.strip():
        return "must be non-empty text"
    if len(value) > max_length:
        return f"must be at most {max_length} characters"
    if not KEY_PATTERN.fullmatch(value) or any("\ud800" <= c <= "\udfff" for c in value):
        return "must not hold control characters or lone surrogates"
    return None


MAX_JSON_DEPTH = 100


def json_problem(value: Any, max_depth: int = MAX_JSON_DEPTH
                 ) -> tuple[list[str | int], str, str] | None:
    """(path, message, kind) of the first thing in a JSON value no store or encoder can take:
    nesting deeper than `max_depth`, a NUL character, or a lone surrogate; None if clean.

    Walks with its own stack, so no input is deep enough to exhaust Python's recursion.
    """
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        node, path = stack.pop()
        if len(path) > max_depth:
            return path[:max_depth + 1], f"nested deeper than {max_depth} levels", "too_deep"
        if isinstance(node, str):
            problem = _text_char_problem(node)
            if problem is not None:
                return path, problem, "string_unstorable"
        elif isinstance(node, dict):
            for key, item in node.items():
                problem = _text_char_problem(key) if isinstance(key, str) else None
                if problem is not None:
                    return [*path, key.encode("utf-8", "backslashreplace").decode()], (
                        f"key {problem}"), "string_unstorable"
                stack.append((item, [*path, key]))
        elif isinstance(node, list | tuple):
            stack.extend((item, [*path, i]) for i, item in enumerate(node))
    return None


def _text_char_problem(text: str) -> str | None:
    if "\x00" in text:
        return "text must not contain NUL (\\u0000) characters"
    if any("\ud800" <= c <= "\udfff" for c in text):
        return "text must not contain lone surrogates (\\ud800-\\udfff), which are not Unicode"
    return None
