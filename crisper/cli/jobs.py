"""Job commands: submit, types, and `jobs ls|show|cancel|retry|start|logs|events`.

Each talks to `state.jobs`: the local service, or a server's API with --url.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from crisper.cli.main import State, fail
from crisper.cli.render import (
    console,
    dumps,
    job_dict,
    job_panel,
    jobs_table,
    progress_console,
)
from crisper.errors import InvalidRequest
from crisper.metadata import parse_pairs
from crisper.reads import job_filter
from crisper.records import EventRecord, JobRecord, Record
from crisper.service import SubmitRequest
from crisper.states import JobState
from crisper.waiting import wait_for_end

R = TypeVar("R", bound=Record)
EXIT_FOR_STATE = {JobState.SUCCEEDED: 0, JobState.FAILED: 1, JobState.CANCELLED: 3}


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """key=value pairs; a value that parses as JSON is taken as JSON, otherwise as text."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {pair!r}")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
        except RecursionError:
            raise typer.BadParameter(f"{key}: JSON nested too deeply") from None
    return params


def register(app: typer.Typer) -> None:
    jobs = typer.Typer(help="List, show and steer jobs.", no_args_is_help=True)
    app.add_typer(jobs, name="jobs")
    app.command()(submit)
    app.command()(types)
    for name, command in (("ls", jobs_ls), ("show", jobs_show), ("cancel", jobs_cancel),
                          ("retry", jobs_retry), ("start", jobs_start), ("logs", jobs_logs),
                          ("events", jobs_events)):
        jobs.command(name)(command)


def submit(
    ctx: typer.Context,
    job_type: str = typer.Argument(..., metavar="TYPE"),
    params: list[str] = typer.Argument(None, metavar="KEY=VALUE..."),
    queue: str = typer.Option(None, help="override the type's queue"),
    priority: int = typer.Option(None, help="0..255, higher first"),
    delay: str = typer.Option(None, help="run after this long, e.g. 30s, 5m"),
    hold: bool = typer.Option(False, help="create held; run after `crisper jobs start`"),
    idempotency_key: str = typer.Option(None, help="a second submit returns the first job"),
    unique_key: str = typer.Option(None, help="one active job per key"),
    reject_duplicate: bool = typer.Option(
        False, help="with a unique key held by an active job: fail (exit 6), not return it"),
    callback_url: str = typer.Option(None, help="POST the job's final record here, signed"),
    soft_time_limit: str = typer.Option(
        None, help="this job's soft time limit instead of its type's, e.g. 10m"),
    time_limit: str = typer.Option(
        None, help="this job's hard time limit (its process is killed), e.g. 12m"),
    wait: bool = typer.Option(False, help="follow the job with a progress bar until it ends"),
    timeout: float = typer.Option(None, help="with --wait: give up after this many seconds"),
    as_json: bool = typer.Option(False, "--json", help="print the job as JSON"),
) -> None:
    """Submit a job. With --wait the exit code tells how it ended."""
    state: State = ctx.obj
    service = state.jobs
    request = SubmitRequest(type=job_type, params=parse_params(params or []), queue=queue,
                            priority=priority, delay=delay, hold=hold,
                            idempotency_key=idempotency_key, unique_key=unique_key,
                            on_duplicate="reject" if reject_duplicate else "return",
                            soft_time_limit=soft_time_limit, time_limit=time_limit,
                            callback_url=callback_url)
    job = service.submit(request)
    if not wait:
        typer.echo(dumps(job_dict(job)) if as_json else f"{job.id} {job.state.value}")
        return
    job = _follow(state, job, timeout)
    typer.echo(dumps(job_dict(job)) if as_json else f"{job.id} {job.state.value}")
    if job.error and not as_json:
        typer.secho(f"{job.error.get('type')}: {job.error.get('message')}", fg="red", err=True)
    raise typer.Exit(EXIT_FOR_STATE.get(job.state, 4))


def types(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """List the registered job types with their parameter schemas."""
    state: State = ctx.obj
    listing = state.jobs.types()
    if as_json:
        typer.echo(dumps(listing))
        return
    for item in listing:
        props = item["params"].get("properties", {})
        args = ", ".join(f"{k}: {v.get('type', 'any')}" for k, v in props.items())
        typer.echo(f"{item['name']}({args})  queue={item['queue']}  "
                   f"{item['description'].splitlines()[0] if item['description'] else ''}")


def jobs_ls(
    ctx: typer.Context,
    state_: list[str] = typer.Option(None, "--state", help="repeat for several"),
    type_: list[str] = typer.Option(None, "--type"),
    queue: list[str] = typer.Option(None, "--queue"),
    tag: str = typer.Option(None, "--tag", help="jobs with this tag (exact)"),
    meta: list[str] = typer.Option(None, "--meta", help="key=value, exact; repeat: all"),
    limit: int = typer.Option(20, min=1, max=1000),
    before: str = typer.Option(None, help="cursor: list jobs older than this id"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List jobs, newest first."""
    state: State = ctx.obj
    try:  # the filter the API and Python build from the same values (reads.job_filter)
        f = job_filter(state=state_ or (), type=type_ or (), queue=queue or (), tag=tag,
                       metadata=parse_pairs(meta or [], "="))
    except InvalidRequest as exc:
        raise fail(f"--{exc.field} {exc.reason}", 2) from exc
    found = state.jobs.list_jobs(f, before=before, limit=limit)
    if as_json:
        typer.echo(dumps([job_dict(j) for j in found]))
    else:
        console.print(jobs_table(found))


def _one(ctx: typer.Context, job_id: str, action: str, as_json: bool,
         **options: Any) -> None:
    state: State = ctx.obj
    job = getattr(state.jobs, action)(job_id, **options)
    if as_json:
        typer.echo(dumps(job_dict(job)))
    elif action == "get":
        console.print(job_panel(job))
    else:
        typer.echo(f"{job.id} {job.state.value}"
                   + (" (cancel requested)" if job.cancel_requested_at else ""))


def jobs_show(ctx: typer.Context, job_id: str,
              as_json: bool = typer.Option(False, "--json")) -> None:
    """Show one job."""
    _one(ctx, job_id, "get", as_json)


def jobs_cancel(ctx: typer.Context, job_id: str,
                as_json: bool = typer.Option(False, "--json")) -> None:
    """Cancel a job: waiting jobs never start; a running one is stopped."""
    _one(ctx, job_id, "cancel", as_json)


def jobs_retry(ctx: typer.Context, job_id: str,
               params: list[str] = typer.Argument(None, metavar="[KEY=VALUE...]"),
               as_json: bool = typer.Option(False, "--json")) -> None:
    """Run a finished (succeeded, failed or cancelled) job again as a new series of attempts.

    With KEY=VALUE pairs, the job's params with these keys changed (the whole set is
    checked by its type; the old one stays in its history): a replay with edited params.
    """
    edited = None
    if params:
        state: State = ctx.obj
        edited = {**state.jobs.get(job_id).params, **parse_params(params)}
    _one(ctx, job_id, "retry", as_json, params=edited)


def jobs_start(ctx: typer.Context, job_id: str,
               as_json: bool = typer.Option(False, "--json")) -> None:
    """Start a held job."""
    _one(ctx, job_id, "start", as_json)


def jobs_logs(ctx: typer.Context, job_id: str,
              as_json: bool = typer.Option(False, "--json")) -> None:
    """Print the log lines kept for a job."""
    state: State = ctx.obj
    _print_rows(state.jobs.logs(job_id), as_json, lambda line: (
        f"{line.at:%H:%M:%S} #{line.attempt} {line.level:<7} {line.message}"))


def jobs_events(ctx: typer.Context, job_id: str,
                as_json: bool = typer.Option(False, "--json")) -> None:
    """Print a job's history: every state change with its time and reason."""
    state: State = ctx.obj
    _print_rows(state.jobs.events(job_id), as_json, _event_line)


def _event_line(e: EventRecord) -> str:
    move = (f"{e.from_state or '-':>9} -> {e.to_state or '-':<9}" if e.to_state
            else f"{'(note)':>22}")
    return (f"{e.at:%H:%M:%S.%f} #{e.attempt} {move} {e.reason}"
            + (f" ({e.worker})" if e.worker else ""))


def _print_rows(rows: Sequence[R], as_json: bool, line: Callable[[R], str]) -> None:
    """Rows (dataclasses) as one JSON list, or one printed line each."""
    if as_json:
        typer.echo(dumps([row.__dict__ for row in rows]))
        return
    for row in rows:
        typer.echo(line(row))


def _follow(state: State, job: JobRecord, timeout: float | None) -> JobRecord:
    last = [job]
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[msg]}"),
                  TimeElapsedColumn(), console=progress_console, transient=False) as bar:
        task = bar.add_task(f"{job.type} {job.state.value}", total=None, msg="")

        def read() -> JobRecord:
            last[0] = now = state.jobs.get(job.id)
            bar.update(task, description=f"{now.type} {now.state.value}",
                       total=now.progress_total, completed=now.progress_current or 0,
                       msg=now.progress_message or "")
            if now.state is JobState.SUCCEEDED and now.progress_total:
                bar.update(task, completed=now.progress_total)
            return now

        try:
            return wait_for_end(read, job.id, timeout, poll=0.2)
        except TimeoutError:
            return last[0]  # the caller reports it still running (exit code 4)
