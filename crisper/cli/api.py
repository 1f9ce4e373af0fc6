"""`crisper api`: serve the HTTP API with uvicorn."""

from __future__ import annotations

import typer

from crisper.cli.main import State


def register(app: typer.Typer) -> None:
    @app.command()
    def api(
        ctx: typer.Context,
        host: str = typer.Option("127.0.0.1", help="address to listen on"),
        port: int = typer.Option(8000, help="port to listen on"),
        workers: int = typer.Option(1, help="uvicorn worker processes"),
        log_level: str = typer.Option("info", help="uvicorn's log level"),
    ) -> None:
        """Serve the HTTP API (/v1, /docs, /metrics, /healthz) for the app's jobs."""
        import uvicorn

        state: State = ctx.obj
        if workers > 1:
            # Each worker process imports the app itself, from the environment (--app etc.).
            uvicorn.run("crisper.api.serve:app", host=host, port=port, workers=workers,
                        log_level=log_level, factory=True)
            return
        from crisper.api import create_app

        uvicorn.run(create_app(state.crisper), host=host, port=port, log_level=log_level)
