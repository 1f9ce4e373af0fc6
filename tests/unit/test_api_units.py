"""Pure pieces of the API: SSE framing and cursors, problem mapping, scopes, worker status."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from crisper.api.problems import describe
from crisper.client import Following, StreamEvent, Waiting, error_from, parse_sse
from crisper.errors import (
    AccessDenied,
    CrisperError,
    DuplicateJob,
    InvalidParams,
    InvalidRequest,
    InvalidTransition,
    JobNotFound,
    MissingScope,
    StoreUnavailable,
    UnknownJobType,
)
from crisper.ids import new_id
from crisper.keys import Principal, hash_secret, parse_scopes
from crisper.monitor import worker_status
from crisper.states import JobState
from crisper.store.stats import id_floor
from crisper.watch import Cursor, SseEvent


@pytest.mark.parametrize(("header", "cursor"), [
    (None, Cursor(0, 0)), ("", Cursor(0, 0)), ("12-7", Cursor(12, 7)), (" 3-0 ", Cursor(3, 0)),
    ("garbage", Cursor(0, 0)), ("1-x", Cursor(0, 0)), ("-1-2", Cursor(0, 0)),
])
def test_last_event_id_parses_or_starts_over(header: str | None, cursor: Cursor) -> None:
    assert Cursor.parse(header) == cursor


def test_cursor_round_trips_through_its_text() -> None:
    assert Cursor.parse(str(Cursor(41, 9))) == Cursor(41, 9)


def test_sse_frames_parse_back_to_the_same_events() -> None:
    events = [SseEvent("state", {"state": "queued"}, "1-0"), SseEvent("progress", {"c": 1}),
              SseEvent("", None, "1-4"), SseEvent("")]
    text = b"".join(e.encode() for e in events).decode()
    assert text.endswith(": keep-alive\n\n")
    parsed = list(parse_sse(iter(text.split("\n"))))
    assert [(p.kind, p.data, p.id) for p in parsed] == [
        ("state", {"state": "queued"}, "1-0"), ("progress", {"c": 1}, None), ("", {}, "1-4")]


def test_a_followed_stream_resumes_after_the_last_id_and_drops_a_cut_message() -> None:
    following = Following("j1", None)
    assert following.headers() == {}
    frames = 'id: 1-0\nevent: state\ndata: {"state": "queued"}\n\nid: 1-4\n\nevent: log'
    got = [following.feed(line) for line in frames.split("\n")]
    # the id-only message moves the cursor but is not handed out
    assert [(e.kind, e.id) for e in got if e is not None] == [("state", "1-0")]
    # the connection drops inside the log message: the next one resumes after 1-4, afresh
    assert following.headers() == {"Last-Event-ID": "1-4"}
    # (the cut message's "event: log" does not stick to the first message of the new one)
    resumed = [following.feed(line) for line in ["data: {}", "", "event: log", "data: {}", ""]]
    assert [e for e in resumed if e is not None] == [StreamEvent("log", {}, None)]


def test_waiting_backs_off_and_gives_up_at_its_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("crisper.waiting.time.monotonic", lambda: clock[0])
    running = SimpleNamespace(state=JobState.RUNNING)
    waiting = Waiting("j1", timeout=1.0, poll=0.1)
    pauses = [waiting.pause_after(running) for _ in range(3)]  # type: ignore[arg-type]
    assert pauses == pytest.approx([0.1, 0.15, 0.225])
    finished = SimpleNamespace(state=JobState.SUCCEEDED)
    assert waiting.pause_after(finished) is None  # type: ignore[arg-type]
    clock[0] += 1.0
    with pytest.raises(TimeoutError, match="still running after 1.0s"):
        waiting.pause_after(running)  # type: ignore[arg-type]


@pytest.mark.parametrize(("error", "status", "kind"), [
    (JobNotFound("x"), 404, "job-not-found"),
    (UnknownJobType("a", ["b"]), 422, "unknown-job-type"),
    (InvalidParams("t", [{"loc": ["n"], "msg": "bad", "type": "int"}]), 422, "invalid-params"),
    (InvalidTransition("j", "succeeded", "started", ["held"]), 409, "invalid-transition"),
    (AccessDenied("no key"), 401, "unauthorized"),
    (MissingScope("weak", scope="write"), 403, "missing-scope"),
    (StoreUnavailable(), 503, "database-unavailable"),
    (CrisperError("odd"), 400, "bad-request"),
])
def test_each_error_has_one_status(error: CrisperError, status: int, kind: str) -> None:
    assert describe(error)[:2] == (status, kind)


def test_invalid_params_paths_start_at_params() -> None:
    _, _, extra = describe(InvalidParams("t", [{"loc": ["a", 0], "msg": "m", "type": "x"}]))
    assert extra["errors"][0]["loc"] == ["params", "a", 0]


def test_problem_answers_turn_back_into_the_same_errors() -> None:
    import httpx

    def answer(status: int, body: dict[str, object]) -> CrisperError:
        return error_from(httpx.Response(status, json=body))

    assert isinstance(answer(404, {"type": "urn:crisper:problem:job-not-found",
                                   "job_id": "j", "detail": "job j not found"}), JobNotFound)
    moved = answer(409, {"type": "urn:crisper:problem:invalid-transition", "detail": "job j is x"})
    assert isinstance(moved, InvalidTransition) and str(moved) == "job j is x"
    assert isinstance(answer(403, {"detail": "no", "scope": "admin"}), AccessDenied)
    assert type(answer(500, {"detail": "boom"})) is CrisperError
    taken = answer(409, {"type": "urn:crisper:problem:duplicate-job", "detail": "job j holds k",
                         "job_id": "j", "unique_key": "k"})
    assert isinstance(taken, DuplicateJob) and (taken.existing, taken.unique_key) == ("j", "k")


def test_scopes_are_validated_and_ordered() -> None:
    assert parse_scopes(["admin", " read", "read"]) == ["read", "admin"]
    with pytest.raises(InvalidRequest, match="unknown scope"):
        parse_scopes(["read", "root"])
    with pytest.raises(InvalidRequest, match="at least one"):
        parse_scopes([""])


def test_a_principal_without_a_scope_is_denied_with_the_fix() -> None:
    who = Principal("key_1", "acme", frozenset({"read"}))
    who.require("read")
    with pytest.raises(AccessDenied, match="crisper keys create --tenant acme --scopes write"):
        who.require("write")


def test_secrets_are_hashed_one_way() -> None:
    assert hash_secret("crisper_a") != hash_secret("crisper_b")
    assert len(hash_secret("crisper_a")) == 64 and "crisper_a" not in hash_secret("crisper_a")


def test_worker_status_from_heartbeats() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert worker_status(now - timedelta(seconds=5), None, now, 30) == "alive"
    assert worker_status(now - timedelta(seconds=31), None, now, 30) == "lost"
    assert worker_status(now - timedelta(seconds=99), now, now, 30) == "stopped"


def test_id_floor_orders_before_every_id_minted_later() -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=5)
    assert id_floor(before) < new_id()
    assert id_floor(datetime.now(UTC) + timedelta(seconds=1)) > new_id()
    assert isinstance(id_floor(before), uuid.UUID)


def test_the_served_app_keeps_what_exists_at_start_out_of_the_collectors_walks(
        tmp_path: object) -> None:
    import gc

    from crisper import Crisper, Settings
    from crisper.api import create_app
    from crisper.api.serve import served

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        api = create_app(Crisper("unit", settings=Settings(
            database_url=f"sqlite:///{tmp_path}/unit.db")))
        assert served(api) is api
        # every object tracked at that moment (thousands: modules, routes, schemas) is frozen
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
