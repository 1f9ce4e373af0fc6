"""Queue commands: `crisper queues ls|pause|resume`."""

from __future__ import annotations

from dataclasses import asdict

import typer
from rich.table import Table

from crisper.cli.main import State
from crisper.cli.render import console, dumps
from crisper.store import utcnow


def register(app: typer.Typer) -> None:
    queues = typer.Typer(help="Queues: depth, running, pause and resume.", no_args_is_help=True)
    app.add_typer(queues, name="queues")

    @queues.command("ls")
    def queues_ls(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
        """List queues: paused or not, queued, running, waiting, oldest queued age."""
        state: State = ctx.obj
        found = state.crisper.queues.list_queues()
        if as_json:
            typer.echo(dumps([{**asdict(q), "paused": q.paused} for q in found]))
            return
        table = Table()
        for col in ("queue", "state", "queued", "running", "waiting", "oldest queued"):
            table.add_column(col)
        now = utcnow()
        for q in found:
            age = f"{(now - q.oldest_queued_at).total_seconds():.0f}s" if q.oldest_queued_at else ""
            table.add_row(q.name, "paused" if q.paused else "active", str(q.queued),
                          str(q.running), str(q.waiting), age)
        console.print(table)

    @queues.command("pause")
    def queues_pause(ctx: typer.Context, name: str) -> None:
        """Stop dispatching a queue (running jobs finish); lasts until resumed."""
        state: State = ctx.obj
        state.crisper.queues.pause(name)
        typer.echo(f"{name} paused")

    @queues.command("resume")
    def queues_resume(ctx: typer.Context, name: str) -> None:
        """Dispatch a paused queue again."""
        state: State = ctx.obj
        state.crisper.queues.resume(name)
        typer.echo(f"{name} resumed")
