"""A submit's own time limits: completed from its type's and checked (pure)."""

from __future__ import annotations

import pytest

from crisper.errors import InvalidRequest
from crisper.time_limits import TimeLimits, own_limits


@pytest.mark.parametrize(("soft", "hard", "type_soft", "type_hard", "expected"), [
    (None, None, 60.0, 90.0, None),                      # nothing asked: the type's apply
    ("10s", None, None, None, TimeLimits(10.0, 40.0)),   # soft only: + the app's kill grace
    ("10s", None, 60.0, 90.0, TimeLimits(10.0, 40.0)),   # soft only: + the type's own grace
    ("10s", None, 60.0, None, TimeLimits(10.0, 40.0)),
    ("1m", None, 100.0, 105.0, TimeLimits(60.0, 65.0)),
    (None, "2h", 6900.0, 7200.0, TimeLimits(6900.0, 7200.0)),  # hard only: type's soft kept
    (None, "30s", 60.0, 90.0, TimeLimits(None, 30.0)),   # the type's soft would come after
    (None, 30, None, None, TimeLimits(None, 30.0)),
    ("1h55m", "2h", None, None, TimeLimits(6900.0, 7200.0)),
    (5, 5, None, None, TimeLimits(5.0, 5.0)),            # hard ≥ soft: equal is allowed
])
def test_own_limits_complete_what_the_submit_leaves_out(
        soft: object, hard: object, type_soft: float | None, type_hard: float | None,
        expected: TimeLimits | None) -> None:
    got = own_limits(soft, hard, type_soft=type_soft, type_hard=type_hard,  # type: ignore[arg-type]
                     kill_grace=30.0)
    assert got == expected


@pytest.mark.parametrize(("soft", "hard", "field", "says"), [
    ("10s", "5s", "time_limit", "may not come before"),
    (0, None, "soft_time_limit", "more than 0"),
    (None, "8d", "time_limit", "at most"),
    ("soon", None, "soft_time_limit", "not a duration"),
    (None, -1, "time_limit", "negative"),
    (True, None, "soft_time_limit", "true/false"),
])
def test_bad_own_limits_are_refused_naming_the_field(soft: object, hard: object, field: str,
                                                     says: str) -> None:
    with pytest.raises(InvalidRequest, match=says) as caught:
        own_limits(soft, hard, type_soft=None, type_hard=None,  # type: ignore[arg-type]
                   kill_grace=30.0)
    assert caught.value.field == field
