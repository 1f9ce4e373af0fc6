"""Pure parts of the dashboard: the submit form, the chart, the attempts, sessions, filters."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from crisper.dashboard import forms
from crisper.dashboard.charts import activity_chart
from crisper.dashboard.fmt import duration
from crisper.dashboard.routes_jobs import ListQuery, allowed_actions
from crisper.dashboard.session import MAX_AGE_SECONDS, SessionData, new_session, tokens_match
from crisper.dashboard.timeline import attempts
from crisper.errors import InvalidRequest
from crisper.insights import Minute
from crisper.records import EventRecord
from crisper.states import JobState

SCHEMA = {
    "properties": {
        "n": {"type": "integer"}, "x": {"type": "number", "default": 0.5},
        "name": {"type": "string", "default": ""}, "on": {"type": "boolean", "default": True},
        "mode": {"enum": ["a", "b"]}, "maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}],
                                               "default": None},
        "items": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["n"],
}


def test_fields_follow_the_schema() -> None:
    fields = {f.name: f for f in forms.fields_of(SCHEMA)}
    assert [f.kind for f in fields.values()] == [
        "integer", "number", "string", "boolean", "choice", "integer", "json"]
    assert fields["n"].required and not fields["x"].required
    assert fields["x"].initial == "0.5" and fields["maybe"].nullable
    assert fields["mode"].choices == ("a", "b")


@pytest.mark.parametrize(("form", "params", "errors"), [
    ({"n": "3"}, {"n": 3, "on": False}, {}),
    ({"n": " -3 ", "x": "2", "on": "true"}, {"n": -3, "x": 2, "on": True}, {}),
    ({"n": "1.5", "x": "1e3"}, {"n": "1.5", "x": 1000.0, "on": False}, {}),
    ({"n": "many", "x": "lots"}, {"n": "many", "x": "lots", "on": False}, {}),
    ({"n": "", "name": " padded "}, {"name": " padded ", "on": False}, {}),
    ({"items": "[1, 2]", "mode": "b"}, {"items": [1, 2], "mode": "b", "on": False}, {}),
    ({"items": "[1,"}, {"on": False}, {"items": "not valid JSON"}),
])
def test_form_text_becomes_params_for_the_job_types_own_validation(
        form: dict[str, str], params: dict[str, object], errors: dict[str, str]) -> None:
    got, problems = forms.params_from_form(forms.fields_of(SCHEMA), form)
    assert got == params
    assert {k: v[:len(errors[k])] for k, v in problems.items()} == errors


def test_validation_errors_go_next_to_their_fields() -> None:
    errors = [{"loc": ["params", "n"], "msg": "bad n"}, {"loc": ["items", 1], "msg": "bad"},
              {"loc": ["other"], "msg": "who"}, {"loc": [], "msg": "whole"}]
    by_field, general = forms.field_errors(errors, {"n", "items"})
    assert by_field == {"n": "bad n", "items": "1: bad"}
    assert general == ["other: who", "params: whole"]


def test_the_chart_stacks_outcomes_and_draws_submissions() -> None:
    start = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    minutes = [Minute(start + timedelta(minutes=i), i % 3, i % 2, 1 if i == 5 else 0)
               for i in range(60)]
    chart = activity_chart(minutes)
    assert chart.totals == {"submitted": sum(i % 3 for i in range(60)), "succeeded": 30,
                            "failed": 1}
    assert len(chart.line.split()) == 60
    assert [b.css for b in chart.bars].count("bad") == 1
    bottom = chart.ticks[0].y
    assert all(b.height > 0 and abs(b.y + b.height - bottom) < 1.01 or b.css == "bad"
               for b in chart.bars)
    assert [label for _, _, label in chart.labels][:2] == ["12:00", "12:10"]
    assert activity_chart([]).bars == []


def _event(i: int, source: str | None, target: str | None, reason: str, attempt: int,
           worker: str | None = None) -> EventRecord:
    at = datetime(2030, 1, 1, tzinfo=UTC) + timedelta(seconds=i)
    return EventRecord(i, uuid.uuid4(), at, source, target, reason, attempt, worker, None)


def test_attempts_are_read_from_the_events() -> None:
    events = [
        _event(0, None, "queued", "submitted", 0),
        _event(1, "queued", "running", "claimed", 1, "w1"),
        _event(3, "running", "retrying", "error", 1, "w1"),
        _event(4, "retrying", "queued", "retry_due", 1),
        _event(5, "queued", "running", "claimed", 2, "w2"),
        _event(6, None, None, "cancel_requested", 2),  # a note, not a move
        _event(9, "running", "cancelled", "cancelled", 2, "w2"),
        _event(10, "cancelled", "queued", "retried", 2),
        _event(11, "queued", "running", "claimed", 3, "w1"),
    ]
    got = attempts(events)
    assert [(a.number, a.worker, a.seconds, a.outcome, a.reason) for a in got] == [
        (1, "w1", 2.0, "retrying", "error"), (2, "w2", 4.0, "cancelled", "cancelled"),
        (3, "w1", None, None, None)]


def test_actions_offered_follow_the_transition_table() -> None:
    assert allowed_actions(JobState.HELD) == ["cancel", "start"]
    assert allowed_actions(JobState.RUNNING) == ["cancel"]
    assert allowed_actions(JobState.FAILED) == ["retry"]
    assert allowed_actions(JobState.SUCCEEDED) == ["retry"]


def test_list_filters_use_an_id_or_an_exact_tag() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    job_id = uuid.uuid4()
    by_id = ListQuery(q=f" {job_id} ").job_filter("t", now)
    assert list(by_id.ids) == [job_id] and by_id.tag is None and by_id.tenant == "t"
    by_tag = ListQuery(state="failed", since="1h", q="nightly").job_filter("t", now)
    assert by_tag.tag == "nightly" and list(by_tag.states) == [JobState.FAILED]
    assert by_tag.created_after == now - timedelta(hours=1)
    assert ListQuery(state="bogus", since="1y").job_filter("t", now).states == []
    assert ListQuery(type="a b", q="").link(before="x") == "?type=a+b&before=x"


def test_sessions_decode_only_fresh_well_formed_cookies() -> None:
    s = new_session("crisper_secret")
    now = time.time()
    assert SessionData.decode(s.encode(), now) == s
    assert SessionData.decode(s.encode(), now + MAX_AGE_SECONDS + 1) is None
    for junk in ("", "not base64!", "e30=", SessionData("k", "short", now).encode()):
        assert SessionData.decode(junk, now) is None
    assert tokens_match(s.csrf, s.csrf)
    assert not tokens_match(s.csrf, None) and not tokens_match(s.csrf, s.csrf[:-1] + "x")


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "–"), (3.21, "3.2 s"), (42, "42 s"), (245, "4 min 05 s"), (7800, "2 h 10 min"),
    (3 * 86400 + 4 * 3600, "3 d 4 h")])
def test_durations_read_like_people_say_them(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


def test_list_filters_take_a_tag_and_metadata_pairs_as_the_api_does() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    query = ListQuery(tag="vip", meta=("customer:acme", "", "region:eu"))
    f = query.job_filter("t", now)
    assert f.tag == "vip" and f.metadata == (("customer", "acme"), ("region", "eu"))
    assert query.link() == "?tag=vip&meta=customer%3Aacme&meta=region%3Aeu"
    assert query.meta_inputs() == ["customer:acme", "region:eu", ""]
    with pytest.raises(InvalidRequest, match="key:value"):
        ListQuery(meta=("nokey",)).job_filter("t", now)
