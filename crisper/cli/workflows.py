"""Workflow commands: `crisper workflows ls|show|cancel|retry`."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import typer
from rich.table import Table

from crisper.cli.jobs import parse_params
from crisper.cli.main import State
from crisper.cli.render import console, dumps
from crisper.workflow_service import WorkflowView


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _counts(view: WorkflowView) -> str:
    return " ".join(f"{state}={n}" for state, n in sorted(view.counts.items()))


def _data(view: WorkflowView) -> dict[str, Any]:
    data = asdict(view)
    data["status"] = view.status
    return data


def register(app: typer.Typer) -> None:
    workflows = typer.Typer(help="Workflows: graphs of jobs stored in the database.",
                            no_args_is_help=True)
    app.add_typer(workflows, name="workflows")
    for name, command in (("ls", workflows_ls), ("show", workflows_show),
                          ("cancel", workflows_cancel), ("retry", workflows_retry)):
        workflows.command(name)(command)


def workflows_ls(ctx: typer.Context, limit: int = typer.Option(20, "--limit"),
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """The newest workflows, with their nodes counted per state."""
    state: State = ctx.obj
    found = state.crisper.workflows.list_workflows(limit=limit)
    if as_json:
        typer.echo(dumps([_data(v) for v in found]))
        return
    table = Table(title="workflows")
    for col in ("id", "name", "status", "nodes", "created (UTC)"):
        table.add_column(col)
    for v in found:
        table.add_row(str(v.id), v.name, v.status, _counts(v), _when(v.created_at))
    console.print(table)


def workflows_show(ctx: typer.Context, workflow_id: str,
                   as_json: bool = typer.Option(False, "--json")) -> None:
    """Every node of a workflow, parents first, with its state and what it waits for."""
    state: State = ctx.obj
    view = state.crisper.workflows.get(workflow_id)
    if as_json:
        typer.echo(dumps(_data(view)))
        return
    parents: dict[str, list[str]] = {}
    for e in view.edges:
        parents.setdefault(e.child, []).append(
            e.parent if e.policy == "fail" else f"{e.parent} ({e.policy})")
    table = Table(title=f"workflow {view.name} {view.id}: {view.status}")
    for col in ("node", "state", "job", "after", "error"):
        table.add_column(col)
    for n in view.nodes:
        after = ", ".join(parents.get(n.node, []))
        table.add_row(n.node, n.state.value, str(n.id), after[:60],
                      ((n.error or {}).get("message") or "")[:60])
    console.print(table)


def workflows_cancel(ctx: typer.Context, workflow_id: str) -> None:
    """Cancel every unfinished node; running ones are asked to stop."""
    state: State = ctx.obj
    view = state.crisper.workflows.cancel(workflow_id)
    typer.echo(f"workflow {view.id}: {view.status} ({_counts(view)})")


def workflows_retry(ctx: typer.Context, workflow_id: str,
                    node: str = typer.Option(None, "--node", help="rerun only this node "
                                             "and its downstream"),
                    params: list[str] = typer.Option(
                        [], "--param", "-p", help="the node's edited params, key=value")
                    ) -> None:
    """Resume: rerun failed nodes and everything after them (succeeded ones are kept)."""
    state: State = ctx.obj
    svc = state.crisper.workflows
    if node is not None:
        edited = None
        if params:  # the given keys change; the others keep their stored values
            try:
                current = svc.get(workflow_id).node(node).params
            except KeyError:  # retry_node names the known nodes
                current = {}
            edited = {**current, **parse_params(params)}
        view = svc.retry_node(workflow_id, node, edited)
    else:
        if params:
            raise typer.BadParameter("--param needs --node")
        view = svc.retry(workflow_id)
    typer.echo(f"workflow {view.id}: {view.status} ({_counts(view)})")

