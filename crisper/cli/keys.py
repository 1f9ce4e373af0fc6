"""`crisper keys create|ls|revoke`: API keys for the HTTP API (secrets are shown once)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import typer
from rich.table import Table

from crisper.cli.main import State, fail
from crisper.cli.render import console, dumps
from crisper.errors import InvalidRequest
from crisper.keys import SCOPES, KeyService
from crisper.store.api_keys import ApiKeyRecord


def _key_dict(record: ApiKeyRecord) -> dict[str, Any]:
    return asdict(record)


def register(app: typer.Typer) -> None:
    keys = typer.Typer(help="API keys: each belongs to a tenant and carries scopes.",
                       no_args_is_help=True)
    app.add_typer(keys, name="keys")
    for name, command in (("create", create), ("ls", ls), ("revoke", revoke)):
        keys.command(name)(command)


def create(
    ctx: typer.Context,
    tenant: str = typer.Option(..., help="the tenant whose jobs the key sees"),
    scopes: str = typer.Option("read,write", help=f"comma-separated: {', '.join(SCOPES)}"),
    name: str = typer.Option(None, help="a note to recognize the key by"),
    as_json: bool = typer.Option(False, "--json", help="print {id, key, ...} as JSON"),
) -> None:
    """Create a key. Its secret is printed now and never again."""
    state: State = ctx.obj
    try:
        new = KeyService(state.crisper.store).create(tenant, scopes.split(","), name)
    except InvalidRequest as exc:
        raise fail(str(exc), exc.exit_code) from exc
    if as_json:
        typer.echo(dumps({**_key_dict(new.record), "key": new.secret}))
        return
    typer.echo(f"id:     {new.record.id}\ntenant: {tenant}\nscopes: "
               f"{','.join(new.record.scopes)}\nkey:    {new.secret}")
    typer.secho("The key is shown only now; keep it somewhere safe.", fg="yellow", err=True)


def ls(ctx: typer.Context, tenant: str = typer.Option(None),
       as_json: bool = typer.Option(False, "--json")) -> None:
    """List keys (never their secrets)."""
    state: State = ctx.obj
    found = KeyService(state.crisper.store).list(tenant)
    if as_json:
        typer.echo(dumps([_key_dict(k) for k in found]))
        return
    table = Table()
    for column in ("id", "tenant", "scopes", "name", "created", "last used", "revoked"):
        table.add_column(column)
    for k in found:
        table.add_row(k.id, k.tenant, ",".join(k.scopes), k.name or "",
                      f"{k.created_at:%Y-%m-%d %H:%M}",
                      f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "",
                      f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "")
    console.print(table)


def revoke(ctx: typer.Context, key_id: str) -> None:
    """Revoke a key: requests with it are refused from now on."""
    state: State = ctx.obj
    KeyService(state.crisper.store).revoke(key_id)
    typer.echo(f"{key_id} revoked")

