"""Cron next-fire times, time zones, DST, catch-up plans and jitter: pure, parameter tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crisper import cron
from crisper.errors import InvalidRequest


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(("expr", "tz", "after", "expected"), [
    ("* * * * *", "UTC", utc(2024, 1, 1, 0, 0, 30), utc(2024, 1, 1, 0, 1)),
    ("* * * * *", "UTC", utc(2024, 1, 1, 0, 1), utc(2024, 1, 1, 0, 2)),  # strictly after
    ("0 9 * * 1-5", "UTC", utc(2024, 1, 5, 9, 0), utc(2024, 1, 8, 9, 0)),  # Fri -> Mon
    ("0 9 * * *", "Europe/Berlin", utc(2024, 1, 1, 0, 0), utc(2024, 1, 1, 8, 0)),  # CET +1
    ("0 9 * * *", "Europe/Berlin", utc(2024, 7, 1, 0, 0), utc(2024, 7, 1, 7, 0)),  # CEST +2
    ("0 9 * * *", "America/New_York", utc(2024, 1, 1, 0, 0), utc(2024, 1, 1, 14, 0)),
    ("*/15 * * * * *", "UTC", utc(2024, 1, 1, 0, 0, 1), utc(2024, 1, 1, 0, 0, 15)),  # seconds
    ("0 0 1 * *", "Asia/Tokyo", utc(2024, 1, 31, 16, 0), utc(2024, 2, 29, 15, 0)),
    # DST: 02:30 does not exist on 2024-03-31 in Berlin; it fires at the first real instant
    ("30 2 * * *", "Europe/Berlin", utc(2024, 3, 30, 12, 0), utc(2024, 3, 31, 1, 0)),
    # DST: 02:30 happens twice on 2024-10-27; it fires once
    ("30 2 * * *", "Europe/Berlin", utc(2024, 10, 26, 12, 0), utc(2024, 10, 27, 0, 30)),
    ("30 2 * * *", "Europe/Berlin", utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30)),
])
def test_next_fire(expr: str, tz: str, after: datetime, expected: datetime) -> None:
    assert cron.next_fire(expr, tz, after) == expected


def test_next_fires_are_increasing_and_in_utc() -> None:
    fires = cron.next_fires("0 */6 * * *", "Australia/Sydney", utc(2024, 4, 5), 8)
    assert len(fires) == 8
    assert all(b > a for a, b in zip(fires, fires[1:], strict=False))
    assert all(f.tzinfo is UTC for f in fires)


@pytest.mark.parametrize(("expr", "tz", "match"), [
    ("61 * * * *", "UTC", "cron expression"), ("* * *", "UTC", "cron expression"),
    ("* * * * *", "Mars/Olympus", "time zone"),
])
def test_bad_expressions_and_zones_are_rejected(expr: str, tz: str, match: str) -> None:
    with pytest.raises(InvalidRequest, match=match) as bad:
        cron.validate(expr, tz)
    assert bad.value.field == ("timezone" if match == "time zone" else "cron")


T0 = utc(2024, 1, 1, 0, 0)


@pytest.mark.parametrize(("expr", "now", "catchup", "window", "fires", "missed", "next_at"), [
    # on time: the one due fire
    ("* * * * *", T0 + timedelta(seconds=1), "none", 3600, [T0], 0, T0 + timedelta(minutes=1)),
    ("* * * * *", T0 + timedelta(seconds=1), "all", 3600, [T0], 0, T0 + timedelta(minutes=1)),
    # not due yet
    ("* * * * *", T0 - timedelta(seconds=1), "none", 3600, [], 0, T0),
    # a scheduler 5 s behind a 2-second schedule: "none" still runs each fire, in order
    ("*/2 * * * * *", T0 + timedelta(seconds=5), "none", 3600,
     [T0 + timedelta(seconds=s) for s in (0, 2, 4)], 0, T0 + timedelta(seconds=6)),
    # ten minutes down: "none" runs only the fire within the last minute; "all" every one
    ("* * * * *", T0 + timedelta(minutes=10, seconds=5), "none", 3600,
     [T0 + timedelta(minutes=10)], 10, T0 + timedelta(minutes=11)),
    ("* * * * *", T0 + timedelta(minutes=3, seconds=5), "all", 3600,
     [T0 + timedelta(minutes=m) for m in range(4)], 0, T0 + timedelta(minutes=4)),
    # "all" within a 2-minute window: older fires are dropped
    ("* * * * *", T0 + timedelta(minutes=10, seconds=5), "all", 125,
     [T0 + timedelta(minutes=m) for m in (8, 9, 10)], 8, T0 + timedelta(minutes=11)),
    # an hourly schedule down for two hours: "none" runs nothing (the last fire is stale)
    ("0 * * * *", T0 + timedelta(hours=2, minutes=10), "none", 3600, [], 3,
     T0 + timedelta(hours=3)),
])
def test_plans_after_a_gap(expr: str, now: datetime, catchup: cron.Catchup, window: float,
                           fires: list[datetime], missed: int, next_at: datetime) -> None:
    assert cron.plan(expr, "UTC", T0, now, catchup, window) == cron.Plan(fires, missed, next_at)


def test_catch_up_is_capped_per_call_and_resumes_where_it_stopped() -> None:
    now = T0 + timedelta(minutes=30)
    first = cron.plan("* * * * *", "UTC", T0, now, "all", 3600, limit=10)
    assert len(first.fires) == 10 and first.next_fire_at == T0 + timedelta(minutes=10)
    rest = cron.plan("* * * * *", "UTC", first.next_fire_at, now, "all", 3600, limit=100)
    assert rest.fires[0] == T0 + timedelta(minutes=10) and rest.fires[-1] == now


@pytest.mark.parametrize("jitter", [0.0, 1.0, 30.0])
def test_jitter_is_within_bounds_and_the_same_on_every_scheduler(jitter: float) -> None:
    delays = [cron.jitter_delay("s", T0 + timedelta(minutes=m), jitter) for m in range(50)]
    assert all(0 <= d < jitter or d == jitter == 0 for d in delays)
    assert delays == [cron.jitter_delay("s", T0 + timedelta(minutes=m), jitter)
                      for m in range(50)]
    if jitter:
        assert len(set(delays)) > 40  # spread, not one fixed delay
