"""Cron arithmetic, pure: next fire times in a time zone, and which fires are due after a gap.

Expressions are cron's five fields (minute hour day month weekday) or six with seconds
first, as cronsim reads them; the time zone is an IANA name. A wall-clock time that a
DST change skips is fired at the first real instant after it; one that repeats fires once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from crisper.errors import InvalidRequest

Overlap = Literal["allow", "skip", "cancel"]
Catchup = Literal["none", "all"]
OVERLAPS: tuple[str, ...] = ("allow", "skip", "cancel")
CATCHUPS: tuple[str, ...] = ("none", "all")
# With catch-up "none", a fire this late still counts as on time (a slow scheduler tick).
ON_TIME_SECONDS = 60.0
MAX_FIRES_PER_TICK = 100


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequest("timezone", f"unknown time zone {name!r}; use an IANA name such "
                             "as 'UTC' or 'Europe/Berlin'") from None


def validate(expr: str, tz: str = "UTC") -> None:
    """InvalidRequest with cronsim's reason if the expression or the zone is wrong."""
    zone(tz)
    try:
        CronSim(expr, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise InvalidRequest("cron", f"bad cron expression {expr!r}: {exc}") from None


def iter_fires(expr: str, tz: str, after: datetime) -> Iterator[datetime]:
    """Fire times (UTC) strictly after `after`, in order, without end."""
    local = after.astimezone(zone(tz))
    for fire in CronSim(expr, local):
        utc = fire.astimezone(UTC)
        if utc > after:
            yield utc


def next_fire(expr: str, tz: str, after: datetime) -> datetime:
    return next(iter_fires(expr, tz, after))


def next_fires(expr: str, tz: str, after: datetime, count: int) -> list[datetime]:
    return list(islice(iter_fires(expr, tz, after), count))


@dataclass(frozen=True)
class Plan:
    """What one scheduler does for one due schedule: the fires to run, those to drop, and
    the next fire time to store."""

    fires: list[datetime]
    missed: int
    next_fire_at: datetime


def plan(expr: str, tz: str, next_fire_at: datetime, now: datetime, catchup: Catchup,
         window: float, limit: int = MAX_FIRES_PER_TICK) -> Plan:
    """The fires due at `now` for a schedule whose stored next fire is `next_fire_at`.

    catch-up "none": every due fire at most ON_TIME_SECONDS late runs (a scheduler that is
    a few seconds behind loses nothing); older ones were downtime and are skipped. "all":
    every due fire at most `window` seconds old runs. Oldest first, at most `limit` per
    call; the rest next call.
    """
    if next_fire_at > now:
        return Plan([], 0, next_fire_at)
    horizon = window if catchup == "all" else ON_TIME_SECONDS
    start = max(next_fire_at, now - timedelta(seconds=horizon))
    tiny = timedelta(microseconds=1)
    missed = _count(expr, tz, next_fire_at - tiny, start)
    due: list[datetime] = []
    fires = iter_fires(expr, tz, start - tiny)
    fire = next(fires)
    while fire <= now and len(due) < limit:
        due.append(fire)
        fire = next(fires)
    return Plan(due, missed, fire)


def _count(expr: str, tz: str, after: datetime, before: datetime, cap: int = 10_000) -> int:
    """How many fires fall after `after` and before `before` (at most `cap`)."""
    n = 0
    for fire in iter_fires(expr, tz, after):
        if fire >= before or n >= cap:
            break
        n += 1
    return n


def jitter_delay(name: str, fire: datetime, jitter: float) -> float:
    """A delay in [0, jitter) that spreads schedules firing at once, the same on every
    scheduler (derived from the schedule and the fire time, not a random draw)."""
    if jitter <= 0:
        return 0.0
    digest = hashlib.sha256(f"{name}|{fire.isoformat()}".encode()).digest()
    return jitter * int.from_bytes(digest[:8], "big") / 2**64


def run_at(name: str, fire: datetime, jitter: float) -> datetime:
    return fire + timedelta(seconds=jitter_delay(name, fire, jitter))
