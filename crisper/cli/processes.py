"""Process commands: up, worker, scheduler, db."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import typer

from crisper.cli.main import State
from crisper.errors import CrisperError

if TYPE_CHECKING:
    from crisper.app import Crisper


def register(app: typer.Typer) -> None:
    db = typer.Typer(help="Database schema.", no_args_is_help=True)
    app.add_typer(db, name="db")

    @db.command("upgrade")
    def db_upgrade(ctx: typer.Context) -> None:
        """Apply the schema migrations (PostgreSQL or SQLite)."""
        state: State = ctx.obj
        state.crisper.store.create_all()
        typer.echo(f"database at head: {state.crisper.store.engine.url.render_as_string()}")

    @app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def worker(ctx: typer.Context) -> None:
        """Run a Celery worker for the app's job types; extra options go to Celery's worker."""
        from crisper.engine.worker import run_worker

        state: State = ctx.obj
        run_worker(state.crisper, list(ctx.args))

    @app.command()
    def scheduler(ctx: typer.Context) -> None:
        """Run the relay, timers, lifeline, canceller and pruner (several copies are safe)."""
        from crisper.maintenance.scheduler import Scheduler

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        state: State = ctx.obj
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            Scheduler(state.crisper).run(stop)

    @app.command()
    def up(
        ctx: typer.Context,
        concurrency: int = typer.Option(2, help="worker processes"),
        pool: str = typer.Option("prefork", help="Celery pool: prefork, threads, solo"),
        api_host: str = typer.Option("127.0.0.1", help="the HTTP API's address"),
        api_port: int = typer.Option(8000, help="the HTTP API's port (0: no API)"),
    ) -> None:
        """Run everything on one machine: broker (embedded if none set), worker, scheduler, API."""
        from crisper.embedded import EmbeddedBroker

        state: State = ctx.obj
        crisper = state.crisper
        settings = crisper.settings
        embedded = None
        if not settings.broker_url:
            embedded = EmbeddedBroker(settings.home)
            os.environ["CRISPER_BROKER_URL"] = embedded.start()
            typer.echo(f"embedded broker: {embedded.url} (data in {settings.home}/)")
        os.environ.setdefault("CRISPER_DATABASE_URL", settings.resolved_database_url())
        try:
            crisper.store.create_all()
        except CrisperError:
            if embedded:
                embedded.stop()
            raise
        typer.echo(f"database: {os.environ['CRISPER_DATABASE_URL']}")
        base = [sys.executable, "-m", "crisper"]
        children = [
            subprocess.Popen([*base, "worker", "--concurrency", str(concurrency), "--pool", pool]),
            subprocess.Popen([*base, "scheduler"]),
        ]
        if api_port:
            children.append(subprocess.Popen(
                [*base, "api", "--host", api_host, "--port", str(api_port)]))
            _announce_api(crisper, api_host, api_port)
        types = ", ".join(crisper.registry.names())
        typer.secho(
            f"\nCrisper is up. Job types: {types}\n"
            "In another terminal (same folder):\n"
            "  crisper submit demo.countdown seconds=10 --wait\n"
            "  crisper jobs ls\n"
            "Ctrl-C stops everything.\n", fg="green",
        )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.is_set() and all(c.poll() is None for c in children):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            for child in children:
                try:
                    child.wait(20)
                except subprocess.TimeoutExpired:
                    child.kill()
            if embedded:
                embedded.stop()


LOCAL_KEY_NAME = "crisper up (local)"


def _announce_api(crisper: Crisper, host: str, port: int) -> None:
    """On loopback, make a fresh local admin key (revoking the last one) and say how to use it."""
    url = f"http://{host}:{port}"
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"API: {url} (create a key with `crisper keys create --tenant T`); "
                   f"dashboard: {url}/dashboard/")
        return
    from crisper.keys import KeyService
    from crisper.service import DEFAULT_TENANT

    keys = KeyService(crisper.store)
    for old in keys.list(name=LOCAL_KEY_NAME, include_revoked=False):
        keys.revoke(old.id)
    new = keys.create(DEFAULT_TENANT, ["read", "write", "admin"], LOCAL_KEY_NAME)
    typer.echo(f"API: {url} (docs at {url}/docs); a local admin key for it:\n"
               f"  export CRISPER_URL={url} CRISPER_API_KEY={new.secret}\n"
               f"Dashboard: {url}/dashboard/ (log in with that key)")
