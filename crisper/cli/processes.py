"""Process commands: up, worker, scheduler, db."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading

import typer

from crisper.cli.main import State


def register(app: typer.Typer) -> None:
    db = typer.Typer(help="Database schema.", no_args_is_help=True)
    app.add_typer(db, name="db")
    db.command("upgrade")(db_upgrade)
    app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(worker)
    app.command()(scheduler)
    app.command()(up)


def db_upgrade(ctx: typer.Context) -> None:
    """Apply the schema migrations (PostgreSQL or SQLite)."""
    state: State = ctx.obj
    state.crisper.store.create_all()
    typer.echo(f"database at head: {state.crisper.store.engine.url.render_as_string()}")


def worker(ctx: typer.Context) -> None:
    """Run a Celery worker for the app's job types; extra options go to Celery's worker."""
    from crisper.engine.worker import run_worker

    state: State = ctx.obj
    c = state.crisper
    run_worker(c.celery, c.store, c.settings, c.declared_queues(),
               getattr(c, "presence", None),  # an adopted Celery app has one already
               list(ctx.args))


def scheduler(ctx: typer.Context) -> None:
    """Run the relay, timers, lifeline, canceller and pruner (several copies are safe)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    state: State = ctx.obj
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        state.crisper.maintenance_loop().run(stop)


def up(
    ctx: typer.Context,
    concurrency: int = typer.Option(2, help="worker processes"),
    pool: str = typer.Option("prefork", help="Celery pool; only prefork can stop a job by "
                             "force, so `crisper worker` refuses the others"),
    api_host: str = typer.Option("127.0.0.1", help="the HTTP API's address"),
    api_port: int = typer.Option(8000, help="the HTTP API's port (0: no API)"),
    drain: float = typer.Option(
        None, min=0, help="on stop, seconds running jobs get to finish before their worker "
        "is stopped cold (CRISPER_DRAIN_SECONDS, default 60)"),
) -> None:
    """Run everything on one machine: broker (embedded if none set), worker, scheduler, API."""
    from crisper.cli.up import Options, Up
    from crisper.engine.worker import check_pool

    check_pool(pool)  # before anything starts, rather than as the worker child's exit

    state: State = ctx.obj
    crisper = state.crisper
    drain_seconds = crisper.settings.drain_seconds if drain is None else drain
    options = Options(concurrency, pool, api_host, api_port, drain_seconds)
    code = Up(crisper, options).run(os.environ)
    if code:
        raise typer.Exit(code)

