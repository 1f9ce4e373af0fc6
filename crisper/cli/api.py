"""`crisper api`: serve the HTTP API with uvicorn.

Defaults chosen for production: one server process per CPU (at most 8, each holds its own
database pool), no per-request access log (enable with --access-log), and uvicorn's fast
event loop and HTTP parser when they are installed (uvloop, httptools: Crisper depends on
them). bench/http_submit.py measures these defaults.
"""

from __future__ import annotations

import os

import typer

from crisper.cli.main import State

MAX_DEFAULT_WORKERS = 8


def default_workers() -> int:
    """One uvicorn process per CPU this process may use, capped."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cpus or 1, MAX_DEFAULT_WORKERS))


# `crisper api`'s options when none are given (bench/http_submit.py prints them).
DEFAULTS: dict[str, object] = {"host": "127.0.0.1", "port": 8000, "workers": default_workers(),
                               "log_level": "info", "access_log": False}


def register(app: typer.Typer) -> None:
    @app.command()
    def api(
        ctx: typer.Context,
        host: str = typer.Option(DEFAULTS["host"], help="address to listen on"),
        port: int = typer.Option(DEFAULTS["port"], help="port to listen on"),
        workers: int = typer.Option(DEFAULTS["workers"], min=1,
                                    help="uvicorn worker processes (default: one per CPU, "
                                         f"at most {MAX_DEFAULT_WORKERS})"),
        log_level: str = typer.Option(DEFAULTS["log_level"], help="uvicorn's log level"),
        access_log: bool = typer.Option(DEFAULTS["access_log"],
                                        help="log every request (off: costs CPU per request)"),
    ) -> None:
        """Serve the HTTP API (/v1, /docs, /metrics, /healthz) for the app's jobs."""
        import uvicorn

        state: State = ctx.obj
        if workers > 1:
            # Each worker process imports the app itself, from the environment (--app etc.).
            uvicorn.run("crisper.api.serve:app", host=host, port=port, workers=workers,
                        log_level=log_level, access_log=access_log, factory=True)
            return
        from crisper.api import create_app
        from crisper.api.serve import served

        uvicorn.run(served(create_app(state.crisper)), host=host, port=port,
                    log_level=log_level, access_log=access_log)
