"""Schedule commands: `crisper schedules ls|add|rm|enable|disable|run-now|import-beat`."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import typer
from rich.table import Table

from crisper.cli.jobs import parse_params
from crisper.cli.main import State
from crisper.cli.render import console, dumps
from crisper.store.schedules import ScheduleRecord


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _every(seconds: float) -> str:
    return f"every {seconds:g}s"


def register(app: typer.Typer) -> None:
    schedules = typer.Typer(help="Cron schedules stored in the database.", no_args_is_help=True)
    app.add_typer(schedules, name="schedules")
    for name, command in (("ls", schedules_ls), ("add", schedules_add),
                          ("import-beat", schedules_import_beat), ("rm", schedules_rm),
                          ("enable", schedules_enable), ("disable", schedules_disable),
                          ("run-now", schedules_run_now)):
        schedules.command(name)(command)


def _show(state: State, s: ScheduleRecord, as_json: bool) -> None:
    if as_json:
        data = asdict(s)
        data["next_fires"] = state.crisper.schedules.next_fires(s, 5)
        typer.echo(dumps(data))
    else:
        typer.echo(f"{s.name} {'enabled' if s.enabled else 'disabled'} "
                   f"next: {_when(s.next_fire_at) or '-'} UTC")


def schedules_ls(ctx: typer.Context, as_json: bool = typer.Option(False, "--json"),
                 builtin: bool = typer.Option(True, help="also list built-in maintenance")
                 ) -> None:
    """List schedules with their next fire times, and the built-in maintenance schedules."""
    state: State = ctx.obj
    svc = state.crisper.schedules
    found = svc.list_schedules()
    builtins = svc.builtins() if builtin else []
    if as_json:
        typer.echo(dumps({
            "schedules": [{**asdict(s), "next_fires": svc.next_fires(s, 5)} for s in found],
            "builtin": [asdict(b) for b in builtins],
        }))
        return
    table = Table(title="schedules")
    for col in ("name", "type", "cron", "tz", "on", "next fire (UTC)", "last fire",
                "fires", "policy", "from"):
        table.add_column(col)
    for s in found:
        table.add_row(s.name, s.type, s.cron, s.timezone, "yes" if s.enabled else "no",
                      _when(s.next_fire_at), _when(s.last_fire_at), str(s.fires),
                      f"overlap={s.overlap} catchup={s.catchup}"
                      + (f" jitter={s.jitter:g}s" if s.jitter else ""), s.source)
    console.print(table)
    if builtins:
        table = Table(title="built-in maintenance (every scheduler runs these)")
        for col in ("name", "period", "last run (UTC)", "last count", "what"):
            table.add_column(col)
        for b in builtins:
            table.add_row(b.name, _every(b.every), _when(b.last_run_at) or "never",
                          "" if b.last_count is None else str(b.last_count), b.description)
        console.print(table)


def schedules_add(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    job_type: str = typer.Argument(..., metavar="TYPE"),
    cron_expr: str = typer.Argument(..., metavar="CRON",
                                    help="'*/5 * * * *' (or six fields, seconds first)"),
    params: list[str] = typer.Argument(None, metavar="KEY=VALUE..."),
    tz: str = typer.Option("UTC", "--tz", help="IANA time zone of the cron times"),
    queue: str = typer.Option(None, help="override the type's queue"),
    priority: int = typer.Option(None, help="0..255, higher first"),
    overlap: str = typer.Option("allow", help="allow | skip | cancel (the previous run)"),
    catchup: str = typer.Option("none", help="none | all (missed fires within the window)"),
    catchup_window: float = typer.Option(3600.0, help="seconds of missed fires to catch up"),
    jitter: float = typer.Option(0.0, help="delay each fire by up to this many seconds"),
    disabled: bool = typer.Option(False, help="store it disabled"),
    replace: bool = typer.Option(False, help="replace a schedule of the same name"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Add (or with --replace, change) a schedule."""
    state: State = ctx.obj
    s = state.crisper.schedules.add(
        name, job_type, cron_expr, params=parse_params(params or []), timezone=tz,
        queue=queue, priority=priority, overlap=overlap, catchup=catchup,  # type: ignore[arg-type]
        catchup_window=catchup_window, jitter=jitter, enabled=not disabled, replace=replace)
    _show(state, s, as_json)


def schedules_import_beat(ctx: typer.Context) -> None:
    """Store the wrapped Celery app's beat entries for moved tasks as Crisper schedules
    (docs/migrating-from-celery.md); `crisper scheduler` also does it when it starts."""
    from crisper.adoption.beat import import_beat

    state: State = ctx.obj
    app = state.crisper
    entries, report = import_beat(app.adopted, lambda: app.schedules.sync_code())
    for name, entry in sorted(entries.items()):
        console.print(f"beat entry {entry!r} -> schedule {name!r}")
    console.print(f"added {len(report.added)}, changed {len(report.changed)}, "
                  f"removed {len(report.removed)}"
                  + (f"; names already used from the CLI/API: {report.conflicts}"
                     if report.conflicts else ""))


def schedules_rm(ctx: typer.Context, name: str) -> None:
    """Delete a schedule (its jobs stay)."""
    state: State = ctx.obj
    state.crisper.schedules.remove(name)
    typer.echo(f"{name} removed")


def schedules_enable(ctx: typer.Context, name: str,
                     as_json: bool = typer.Option(False, "--json")) -> None:
    """Turn a schedule on; its next fire is counted from now."""
    state: State = ctx.obj
    _show(state, state.crisper.schedules.enable(name), as_json)


def schedules_disable(ctx: typer.Context, name: str,
                      as_json: bool = typer.Option(False, "--json")) -> None:
    """Turn a schedule off."""
    state: State = ctx.obj
    _show(state, state.crisper.schedules.disable(name), as_json)


def schedules_run_now(ctx: typer.Context, name: str) -> None:
    """Fire a schedule once, now; prints the job id."""
    state: State = ctx.obj
    job = state.crisper.schedules.run_now(name)
    typer.echo(f"{job.id} {job.state.value}")

