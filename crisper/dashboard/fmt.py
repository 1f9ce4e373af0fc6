"""Template filters: ages, durations, times and JSON as people read them. Pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


def duration(seconds: float | None) -> str:
    """3.2 s, 4 min 05 s, 2 h 10 min, 3 d 4 h."""
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def age(at: datetime | None, now: datetime | None = None) -> str:
    """How long ago, as a duration ("12 s ago")."""
    if at is None:
        return "–"
    now = now or datetime.now(UTC)
    return f"{duration(max((now - at).total_seconds(), 0.0))} ago"


def timestamp(at: datetime | None) -> str:
    """UTC, to the second: the same in every browser and in every log."""
    if at is None:
        return "–"
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}%"


FILTERS = {"duration": duration, "age": age, "ts": timestamp, "json": pretty_json,
           "percent": percent}
