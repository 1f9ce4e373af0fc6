"""Named limits: declaration, the keys they give jobs, and the token arithmetic (pure)."""

from __future__ import annotations

import pytest

from crisper import ConfigurationError, Crisper
from crisper.flow import limits


def test_job_types_given_one_named_limit_draw_on_one_key() -> None:
    # Given two types sharing "email" (one keyed per host) and a type with its own limit
    app = Crisper("t")
    email = app.rate_limit("email", "50/m", burst=5)
    a = app.job(name="a", rate_limit=email)(lambda ctx, to: None)
    b = app.job(name="b", rate_limit=email, rate_key="host")(lambda ctx, host: None)
    own = app.job(name="c", rate_limit="50/m")(lambda ctx: None)

    # When their keys are computed, Then the shared ones are the limit's, not the types'
    assert limits.rate_key(a.options.flow, "a", {"to": "x"}) == "@email"
    assert limits.rate_key(b.options.flow, "b", {"host": "h1"}) == "@email:h1"
    assert limits.rate_key(own.options.flow, "c", {}) == "c"


def test_job_types_given_one_concurrency_limit_share_its_slots() -> None:
    app = Crisper("t")
    gpu = app.concurrency_limit("gpu", 2)
    a = app.job(name="a", concurrency=gpu)(lambda ctx: None)
    b = app.job(name="b", concurrency=gpu, concurrency_key="user")(lambda ctx, user: None)
    assert limits.concurrency_key(a.options.flow, "a", {}) == "@gpu"
    assert limits.concurrency_key(b.options.flow, "b", {"user": "u"}) == "@gpu:u"
    assert a.options.flow.concurrency == 2


@pytest.mark.parametrize(("declare", "message"), [
    (lambda app: app.rate_limit("Bad Name", "1/s"), "limit name"),
    (lambda app: app.concurrency_limit("gpu", 0), "at least 1"),
    (lambda app: (app.rate_limit("x", "1/s"), app.rate_limit("x", "2/s")), "already declared"),
    (lambda app: (app.rate_limit("x", "1/s"), app.concurrency_limit("x", 2)), "already declared"),
    (lambda app: app.job(name="j", rate_limit=app.rate_limit("x", "5/s"), burst=2)(
        lambda ctx: None), "burst belongs"),
])
def test_bad_named_limits_are_refused_at_declaration(declare: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        declare(Crisper("t"))  # type: ignore[operator]


def test_declaring_the_same_limit_twice_answers_the_same_limit() -> None:
    app = Crisper("t")
    assert app.rate_limit("x", "5/s", burst=2) == app.rate_limit("x", "5/s", burst=2)


@pytest.mark.parametrize(("tat", "now", "burst", "tokens"), [
    (0.0, 100.0, 3, 3),      # idle bucket: the whole burst
    (100.0, 100.0, 3, 3),    # exactly caught up
    (101.0, 100.0, 3, 2),    # one slot taken ahead
    (103.0, 100.0, 3, 0),    # the burst is spent
    (110.0, 100.0, 3, 0),    # far ahead: never negative
    (100.5, 100.0, 1, 0),    # half an interval ahead, burst 1: wait
])
def test_tokens_left_follow_the_reservation_arithmetic(tat: float, now: float, burst: int,
                                                       tokens: int) -> None:
    assert limits.gcra_tokens(tat, now, 1.0, burst) == tokens
    # and a reservation now waits iff no token is left
    _, wait = limits.gcra_reserve(tat, now, 1.0, burst)
    assert (wait == 0) == (tokens > 0)
