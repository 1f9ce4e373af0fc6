"""Webhook and batch commands: `crisper webhooks …` and `crisper batches …` (on the app's
database, like `crisper schedules`)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer

from crisper.batches import Callback
from crisper.cli.main import State
from crisper.cli.render import dumps
from crisper.durations import option_seconds
from crisper.errors import InvalidRequest
from crisper.service import SubmitRequest
from crisper.store.batches import BatchRecord

TENANT = typer.Option("default", help="the tenant whose webhooks or batches these are")


def register(app: typer.Typer) -> None:
    webhooks = typer.Typer(help="Signed webhooks: subscriptions, secrets, deliveries.",
                           no_args_is_help=True)
    batches = typer.Typer(help="Batches of jobs with callbacks.", no_args_is_help=True)
    app.add_typer(webhooks, name="webhooks")
    app.add_typer(batches, name="batches")
    _webhook_commands(webhooks)
    _batch_commands(batches)


def _webhook_commands(webhooks: typer.Typer) -> None:
    for name, command in (("subscribe", webhooks_subscribe), ("list", webhooks_list),
                          ("unsubscribe", webhooks_unsubscribe), ("secret", webhooks_secret),
                          ("rotate", webhooks_rotate), ("deliveries", webhooks_deliveries),
                          ("redeliver", webhooks_redeliver)):
        webhooks.command(name)(command)


def webhooks_subscribe(ctx: typer.Context, url: str,
                       event: list[str] = typer.Option(..., "--event", help="repeat for several"),
                       type_: str = typer.Option(None, "--type"), queue: str = typer.Option(None),
                       tenant: str = TENANT) -> None:
    """Subscribe URL to events (job.succeeded, job.failed, batch.finished, …)."""
    state: State = ctx.obj
    sub = state.crisper.webhooks.subscribe(url, event, tenant, type=type_, queue=queue)
    typer.echo(f"{sub.id} {sub.url} {','.join(sub.events)}")


def webhooks_list(ctx: typer.Context, tenant: str = TENANT) -> None:
    """List the subscriptions."""
    state: State = ctx.obj
    for s in state.crisper.webhooks.subscriptions(tenant):
        typer.echo(f"{s.id} {s.url} {','.join(s.events)} type={s.type or '*'} "
                   f"queue={s.queue or '*'}")


def webhooks_unsubscribe(ctx: typer.Context, sub_id: str, tenant: str = TENANT) -> None:
    state: State = ctx.obj
    state.crisper.webhooks.unsubscribe(sub_id, tenant)
    typer.echo(f"removed {sub_id}")


def webhooks_secret(ctx: typer.Context, tenant: str = TENANT) -> None:
    """Print the signing secrets in force, newest first."""
    state: State = ctx.obj
    for value in state.crisper.webhooks.secrets(tenant):
        typer.echo(value)


def webhooks_rotate(ctx: typer.Context, overlap: str = typer.Option(
                 "1d", help="how long the old secret keeps signing, e.g. 1h, 1d"),
                 tenant: str = TENANT) -> None:
    """Make a new signing secret; the old one signs too for the overlap."""
    state: State = ctx.obj
    seconds = option_seconds("--overlap", overlap, zero_ok=True) or 0.0
    typer.echo(state.crisper.webhooks.rotate_secret(tenant, seconds))


def webhooks_deliveries(ctx: typer.Context, job: str = typer.Option(None, help="of this job"),
                        state_: str = typer.Option(None, "--state"),
                        limit: int = typer.Option(20, min=1, max=1000),
                        as_json: bool = typer.Option(False, "--json"),
                        tenant: str = TENANT) -> None:
    """List deliveries, newest first: state, attempts, last response."""
    state: State = ctx.obj
    found = state.crisper.webhooks.deliveries(tenant, job_id=job, state=state_, limit=limit)
    if as_json:
        typer.echo(dumps([asdict(d) for d in found]))
        return
    for d in found:
        typer.echo(f"{d.id} {d.event} {d.state} attempts={d.attempts} "
                   f"status={d.last_status or '-'} {d.url or '(callback job)'}")


def webhooks_redeliver(ctx: typer.Context, delivery_id: str, tenant: str = TENANT) -> None:
    """Send a delivery again now."""
    state: State = ctx.obj
    d = state.crisper.webhooks.redeliver(delivery_id, tenant)
    typer.echo(f"{d.id} {d.state}")



def _batch_line(b: BatchRecord) -> str:
    return (f"{b.id} total={b.total} succeeded={b.succeeded} failed={b.failed} "
            f"cancelled={b.cancelled} pending={b.pending} {b.description or ''}").rstrip()


def _read_jobs(path: Path) -> list[SubmitRequest]:
    """One JSON object a line: {"type": …, "params": {…}, "queue"?: …}."""
    requests = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item: dict[str, Any] = json.loads(line)
            requests.append(SubmitRequest(type=item["type"], params=item.get("params") or {},
                                          queue=item.get("queue")))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidRequest(f"{path}:{n}", f"not a job line ({exc})") from None
    return requests


def _batch_commands(batches: typer.Typer) -> None:
    for name, command in (("submit", batches_submit), ("list", batches_list),
                          ("show", batches_show), ("cancel", batches_cancel),
                          ("retry", batches_retry)):
        batches.command(name)(command)


def batches_submit(ctx: typer.Context, path: Path = typer.Argument(..., help="JSON lines of jobs"),
                   description: str = typer.Option(None),
                   on_complete: str = typer.Option(None, help="webhook URL when all have ended"),
                   on_success: str = typer.Option(None, help="webhook URL when all succeeded"),
                   on_death: str = typer.Option(None, help="webhook URL when one failed"),
                   tenant: str = TENANT) -> None:
    """Submit the file's jobs as one batch."""
    state: State = ctx.obj
    callbacks = {k: Callback(url=u) for k, u in (("complete", on_complete),
                                                  ("success", on_success),
                                                  ("death", on_death)) if u}
    b = state.crisper.batches.submit(_read_jobs(path), tenant=tenant,
                                     description=description, callbacks=callbacks)
    typer.echo(_batch_line(b))


def batches_list(ctx: typer.Context, tenant: str = TENANT) -> None:
    state: State = ctx.obj
    for b in state.crisper.batches.list_batches(tenant):
        typer.echo(_batch_line(b))


def batches_show(ctx: typer.Context, batch_id: str, as_json: bool = typer.Option(False, "--json"),
                 tenant: str = TENANT) -> None:
    state: State = ctx.obj
    b = state.crisper.batches.get(batch_id, tenant)
    typer.echo(dumps({**asdict(b), "pending": b.pending}) if as_json else _batch_line(b))


def batches_cancel(ctx: typer.Context, batch_id: str, tenant: str = TENANT) -> None:
    """Cancel every job of the batch still waiting or running."""
    state: State = ctx.obj
    r = state.crisper.batches.cancel(batch_id, tenant)
    typer.echo(f"matched={r.matched} changed={r.changed} skipped={r.skipped}")


def batches_retry(ctx: typer.Context, batch_id: str, tenant: str = TENANT) -> None:
    """Run the batch's failed and cancelled jobs again."""
    state: State = ctx.obj
    r = state.crisper.batches.retry(batch_id, tenant)
    typer.echo(f"matched={r.matched} changed={r.changed} skipped={r.skipped}")

