"""Celery beat entries for moved tasks, taken over by Crisper's scheduler.

When a task moves, each `beat_schedule` entry that runs it becomes a code schedule of the
same name (`crisper scheduler` syncs code schedules at start), and the entry leaves the app's
beat_schedule, so a `celery beat` still running from the same module does not fire it twice.
Crontabs carry over as they are; a fixed interval carries over when a cron line can say it
(a whole number of minutes dividing an hour, or of hours dividing a day). Anything else is
refused at definition with the entry named. `crisper schedules import-beat` stores them at
once (every `crisper scheduler` also does when it starts) and says which entries it took.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from crisper.errors import ConfigurationError

if TYPE_CHECKING:
    from celery import Celery

    from crisper.adoption import Adopted
    from crisper.adoption.tasks import AdoptedJobType
    from crisper.schedules import SyncReport


def cron_line(schedule: Any) -> str:
    """A beat schedule (crontab, timedelta, seconds) as a five-field cron line, in UTC."""
    from celery.schedules import crontab
    from celery.schedules import schedule as interval

    if isinstance(schedule, crontab):
        parts = (schedule._orig_minute, schedule._orig_hour, schedule._orig_day_of_month,
                 schedule._orig_month_of_year, schedule._orig_day_of_week)
        return " ".join(str(p) for p in parts)
    if isinstance(schedule, interval):
        schedule = schedule.run_every
    every = schedule.total_seconds() if isinstance(schedule, timedelta) else float(schedule)
    minutes, hours = every / 60, every / 3600
    if minutes == 1:
        return "* * * * *"
    if minutes.is_integer() and minutes < 60 and 60 % int(minutes) == 0:
        return f"*/{int(minutes)} * * * *"
    if hours.is_integer() and hours < 24 and 24 % int(hours) == 0:
        return "0 * * * *" if hours == 1 else f"0 */{int(hours)} * * *"
    if hours == 24:
        return "0 0 * * *"
    raise ValueError(f"an interval of {every:g} s has no cron line")


def schedule_name(entry: str) -> str:
    """The beat entry's name, made a valid schedule name."""
    name = re.sub(r"[^A-Za-z0-9_.:@+-]", "-", entry)[:90]
    return name if re.match(r"[A-Za-z0-9_]", name) else f"beat-{name}"[:90]


def honour_beat(adopted: Adopted, app: Celery, job_type: AdoptedJobType) -> None:
    """Take over the app's beat entries that run `job_type` (see the module's docstring)."""
    entries = app.conf.beat_schedule or {}
    for entry, spec in list(entries.items()):
        if spec.get("task") != job_type.name:
            continue
        try:
            cron = cron_line(spec["schedule"])
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"beat entry {entry!r} for {job_type.name}: {exc}; give "
                                     "the job a schedule= crontab instead") from None
        params = job_type.bind_params(tuple(spec.get("args") or ()),
                                      dict(spec.get("kwargs") or {}))
        options = spec.get("options") or {}
        name = schedule_name(entry)
        adopted.declare(name, job_type.name, cron, params,
                        tz=str(app.conf.timezone or "UTC"), queue=options.get("queue"))
        adopted.beat_entries[name] = entry
        del entries[entry]


def import_beat(adopted: Adopted | None, sync: Callable[[], SyncReport]
                ) -> tuple[dict[str, str], SyncReport]:
    """Store the schedules taken over from beat now (`sync`: the app's code schedules synced),
    as a scheduler does when it starts."""
    if adopted is None:
        raise ConfigurationError("import-beat needs an app that wraps a Celery app: "
                                 "Crisper(name, celery=app)")
    return dict(adopted.beat_entries), sync()
