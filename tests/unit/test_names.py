"""The rules for user-supplied names: queues, tags, schedule names, keys and JSON values."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crisper.errors import ConfigurationError
from crisper.names import (
    declared_queues,
    json_problem,
    queue_problem,
    schedule_name_problem,
    tag_problem,
    text_problem,
    unknown_queue_problem,
)
from crisper.registry import job_options
from crisper.settings import Settings
from crisper.store.stats import id_floor


@pytest.mark.parametrize(("name", "allowed"), [
    ("default", True),
    ("imports", True),
    ("q-0a1b.c_d", True),
    ("9lives", True),
    ("a" * 64, True),
    ("a" * 65, False),
    ("", False),
    ("Imports", False),
    ("-lead", False),
    ("has space", False),
    ("a,b", False),
    ("a:b", False),
    ("default\n", False),
    ("x\x06\x163", False),           # Kombu's priority-step separator
    ("unacked", False),              # Kombu Redis: the unacked hash
    ("unacked_index", False),
    ("unacked_mutex", False),
    ("_kombu.binding.default", False),
    ("celeryev", False),             # Celery events exchange
    ("celeryev.abc", False),
    ("celery.pidbox", False),        # remote control
    ("w1.reply.celery.pidbox", False),
    ("amq.gen-123", False),          # RabbitMQ reserves amq.*
    (None, False),
])
def test_queue_names_are_safe_and_never_a_broker_key(name: object, allowed: bool) -> None:
    assert (queue_problem(name) is None) is allowed


def test_a_submit_may_name_only_a_declared_queue_and_is_told_the_known_ones() -> None:
    known = declared_queues(["imports", "default"], ["email"])
    assert known == ["default", "email", "imports"]
    assert unknown_queue_problem("email", known) is None
    problem = unknown_queue_problem("nope", known)
    assert problem is not None and "known: default, email, imports" in problem
    # a reserved name is refused even when someone declared it
    assert unknown_queue_problem("unacked", [*known, "unacked"]) is not None


def test_a_job_type_with_a_bad_queue_fails_at_definition() -> None:
    for bad in ("unacked", "_kombu.binding.default", "a b"):
        with pytest.raises(ConfigurationError, match="queue"):
            job_options(queue=bad)


def test_the_queues_setting_reads_a_comma_list_and_refuses_broker_keys() -> None:
    assert Settings(queues="email, ai").queues == ["email", "ai"]  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reserved"):
        Settings(queues=["email", "unacked"])


@pytest.mark.parametrize(("tag", "allowed"), [
    ("nightly", True), ("schedule:report-1", True), ("env=prod", True), ("été", False),
    ("%", False), ("_", True), ("a%", False), ("", False), ("x" * 101, False),
    ("tab\there", False), ("\ud800", False), ("' OR 1=1 --", False),
])
def test_tags_match_the_tag_pattern(tag: str, allowed: bool) -> None:
    assert (tag_problem(tag) is None) is allowed


@pytest.mark.parametrize(("name", "allowed"), [
    ("nightly-report", True), ("a.b:c@d+e_f", True), ("x" * 90, True), ("x" * 91, False),
    ("a/b", False), ("", False), ("line\nbreak", False), ("-x", False),
])
def test_schedule_names_are_path_segments_and_tags(name: str, allowed: bool) -> None:
    assert (schedule_name_problem(name) is None) is allowed


@pytest.mark.parametrize(("key", "allowed"), [
    ("order-17", True), ("x" * 300, True), ("x" * 301, False), ("   ", False),
    ("a\x00b", False), ("a\x1bb", False), ("\udc80", False),
])
def test_keys_have_a_length_and_no_control_characters(key: str, allowed: bool) -> None:
    assert (text_problem(key, 300) is None) is allowed


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(("value", "found"), [
    ({"a": [1, {"b": "ok"}]}, None),
    ({"a": [1, {"b": "x\x00"}]}, (["a", 1, "b"], "string_unstorable")),
    ({"k\x00": 1}, (["k\x00"], "string_unstorable")),
    ({"a": "\ud800"}, (["a"], "string_unstorable")),
    ({"\ud800": 1}, (["\\ud800"], "string_unstorable")),
    ({"a": nested(99)}, None),
    ({"a": nested(100)}, (["a", *[0] * 100], "too_deep")),
    ({"a": nested(100_000)}, (["a", *[0] * 100], "too_deep")),  # no RecursionError
])
def test_json_values_no_store_can_take_are_found_by_path(value: object, found: object) -> None:
    problem = json_problem(value)
    assert (None if problem is None else (problem[0], problem[2])) == found


@pytest.mark.parametrize("at", [
    datetime(1969, 1, 1, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC),
])
def test_a_time_before_1970_floors_at_the_first_id(at: datetime) -> None:
    assert id_floor(at).int == 0



def test_a_claim_names_its_queue_in_the_sql_only_when_the_name_passes_the_rule() -> None:
    from crisper.store.statements import with_queue_literal

    sql = "SELECT 1 WHERE queue = %(want_queue)s AND other = %(x)s AND q2 = %(want_queue)s"
    # a valid name is written in, quoted, at every place the parameter stood
    assert with_queue_literal(sql, "mail.eu-1") == \
        "SELECT 1 WHERE queue = 'mail.eu-1' AND other = %(x)s AND q2 = 'mail.eu-1'"
    # any other keeps its parameter (it is bound, never spliced into the SQL)
    for bad in ("x' OR '1'='1", "Mail", "a%b", "", "q;drop"):
        assert with_queue_literal(sql, bad) == sql
