"""Turning records into JSON for scripts and Rich tables for people."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from crisper.records import JobRecord

console = Console()
progress_console = Console(stderr=True)  # live progress is for people: keep stdout for data


def job_dict(job: JobRecord) -> dict[str, Any]:
    data = asdict(job)
    data["id"] = str(job.id)
    data["state"] = job.state.value
    data["progress"] = {"current": job.progress_current, "total": job.progress_total,
                        "percent": job.percent, "message": job.progress_message}
    for key in ("progress_current", "progress_total", "progress_message"):
        data.pop(key)
    return data


def dumps(data: Any) -> str:
    return json.dumps(data, default=_default, indent=2)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def jobs_table(jobs: list[JobRecord]) -> Table:
    table = Table(show_lines=False)
    for column in ("id", "type", "state", "queue", "attempt", "progress", "created"):
        table.add_column(column)
    for job in jobs:
        progress = f"{job.percent:.0f}%" if job.percent is not None else ""
        table.add_row(str(job.id), job.type, job.state.value, job.queue,
                      f"{job.attempt}/{job.max_attempts}", progress, _when(job.created_at))
    return table


def job_panel(job: JobRecord) -> Table:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for key, value in job_dict(job).items():
        if value in (None, [], {}):
            continue
        if key == "error" and isinstance(value, dict):
            value = f"{value.get('type')}: {value.get('message')}"
        table.add_row(key, value if isinstance(value, str) else dumps(value))
    return table
