"""Entry point and global options; commands live in their own modules."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import typer

from crisper.app import Crisper
from crisper.errors import CrisperError

if TYPE_CHECKING:
    from crisper.cli.backends import JobsBackend

EXIT_CODES = """Exit codes: 0 ok (with --wait: the job succeeded); 1 the job failed;
2 bad input (usage, unknown type, invalid params); 3 the job was cancelled;
4 --wait timed out; 5 job (or key, schedule) not found; 6 action not allowed in the job's
state, a unique job already active, or a concurrent change (try again);
7 database or broker unavailable; 8 configuration error; 9 API key refused."""

app = typer.Typer(
    name="crisper", no_args_is_help=True, add_completion=False,
    help=f"Crisper: durable, truthful jobs on Celery.\n\n{EXIT_CODES}",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass
class State:
    app_spec: str | None = None
    url: str | None = None
    api_key: str | None = None
    _app: Crisper | None = field(default=None, repr=False)
    _jobs: JobsBackend | None = field(default=None, repr=False)

    @property
    def jobs(self) -> JobsBackend:
        """The job commands' backend: a server's API with --url, else this app's service."""
        if self._jobs is None:
            from crisper.cli.backends import LocalJobs, RemoteJobs

            if self.url:
                from crisper.client import Client

                self._jobs = RemoteJobs(Client(self.url, self.api_key))
            else:
                self._jobs = LocalJobs(self.crisper)
        return self._jobs

    @property
    def crisper(self) -> Crisper:
        if self._app is None:
            from crisper.loading import load_app

            self._app = load_app(self.app_spec)
        return self._app


@app.callback()
def _global(
    ctx: typer.Context,
    app_spec: str = typer.Option(None, "--app", "-A", envvar="CRISPER_APP",
                                 help="module[:attribute] with your Crisper app (default: demo)"),
    database_url: str = typer.Option(None, "--database-url", help="CRISPER_DATABASE_URL"),
    broker_url: str = typer.Option(None, "--broker-url", help="CRISPER_BROKER_URL"),
    redis_url: str = typer.Option(None, "--redis-url", help="CRISPER_REDIS_URL"),
    home: str = typer.Option(None, "--home", help="CRISPER_HOME (embedded default's folder)"),
    url: str = typer.Option(None, "--url", envvar="CRISPER_URL",
                            help="job commands go to this Crisper API server"),
    api_key: str = typer.Option(None, "--api-key", envvar="CRISPER_API_KEY",
                                help="API key for --url (CRISPER_API_KEY)"),
) -> None:
    # Flags become the environment so that the user's app, built on import, reads them.
    for name, value in (("DATABASE_URL", database_url), ("BROKER_URL", broker_url),
                        ("REDIS_URL", redis_url), ("HOME", home), ("APP", app_spec)):
        if value:
            os.environ[f"CRISPER_{name}"] = value
    ctx.obj = State(app_spec=app_spec, url=url, api_key=api_key)


def fail(message: str, code: int) -> typer.Exit:
    typer.secho(f"error: {message}", fg="red", err=True)
    return typer.Exit(code)


def exit_code_for(exc: CrisperError) -> int:
    """The exit code each error class states (EXIT_CODES lists them)."""
    return exc.exit_code


def _register_commands() -> None:
    from crisper.cli import api, jobs, keys, processes, queues, schedules, webhooks, workflows

    processes.register(app)
    jobs.register(app)
    keys.register(app)
    api.register(app)
    schedules.register(app)
    queues.register(app)
    workflows.register(app)
    webhooks.register(app)


def main(argv: list[str] | None = None) -> Any:
    _register_commands()
    try:
        return app(args=argv if argv is not None else sys.argv[1:], standalone_mode=True)
    except CrisperError as exc:  # the one place a Crisper error becomes a message and exit code
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(exit_code_for(exc))
