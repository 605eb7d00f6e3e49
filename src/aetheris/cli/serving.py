"""Serve the HTTP API (``server``) and manage its API keys (``keys create|list|revoke``)."""

from __future__ import annotations

import click

from aetheris.app import App
from aetheris.cli import observing, render
from aetheris.cli.base import Env, database_option, json_option, main, pass_env, with_app
from aetheris.errors import AetherisError
from aetheris.keys import create_key
from aetheris.store.port import ApiKey, Role


@main.command()
@click.option(
    "--app", "app_spec", metavar="MOD:APP", help="The App to serve (default: the database's)."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--no-auth",
    is_flag=True,
    help="Accept requests without an API key, as an admin of every tenant: for local "
    "development, on a loopback address only.",
)
@click.option(
    "--mcp",
    "with_mcp",
    is_flag=True,
    help="Also serve the tools of `aetheris mcp serve` over streamable HTTP at /mcp, behind "
    "the same keys (needs the mcp extra).",
)
@observing.log_format_option
@observing.metrics_token_option
@database_option
@pass_env
def server(
    env: Env,
    app_spec: str | None,
    host: str,
    port: int,
    no_auth: bool,
    with_mcp: bool,
    log_format: str,
    metrics_token: str | None,
) -> None:
    """Serve the HTTP API (/v1, OpenAPI at /openapi.json) until SIGTERM or Ctrl-C.

    Requests carry `Authorization: Bearer KEY` (`aetheris keys create`). Prometheus metrics
    are at /metrics for scrapers with the metrics token (with --no-auth: for anyone)."""
    from aetheris.api.server import check_binding, serve
    from aetheris.store.postgres_pooling import for_process

    try:
        check_binding(host, not no_auth)
    except AetherisError as exc:
        raise click.UsageError(str(exc)) from None
    from aetheris.cli.mcp_serve import mounter

    extend = mounter(host) if with_mcp else None
    observing.set_up(log_format)
    app = env.app(app_spec)
    app.database_url = for_process(app.database_url, "aetheris-server")
    serve(
        app,
        host=host,
        port=port,
        auth=not no_auth,
        metrics_token=metrics_token,
        log_format=log_format,
        extend=extend,
    )


@main.group()
def keys() -> None:
    """API keys of the HTTP server: each has a role and a tenant."""


def key_json(key: ApiKey) -> dict[str, object]:
    return {
        "id": key.id,
        "tenant": key.tenant,
        "role": key.role.value,
        "name": key.name,
        "created_at": render.iso(key.created_at),
        "revoked_at": render.iso(key.revoked_at),
    }


@keys.command("create")
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
@click.option("--tenant", required=True, help="The tenant whose jobs the key sees.")
@click.option("--name", help="A label (who or what uses the key).")
@json_option
@with_app(writes=True)
async def keys_create(app: App, role: str, tenant: str, name: str | None, as_json: bool) -> None:
    """Create a key and print it, once: only its hash is stored."""
    key, token = await create_key(await app.open_store(), role, tenant, name=name, clock=app.clock)
    if as_json:
        render.print_json({**key_json(key), "key": token})
        return
    click.echo(token)
    click.echo(
        f"key {key.id}: role {key.role.value}, tenant {key.tenant}. This is the only time "
        "it is shown: keep it now.",
        err=True,
    )


@keys.command("list")
@json_option
@with_app()
async def keys_list(app: App, as_json: bool) -> None:
    """Every key (never its secret), revoked ones too."""
    found = await (await app.open_store()).api_keys()
    if as_json:
        render.print_json([key_json(k) for k in found])
        return
    if not found:
        click.echo("no API keys: `aetheris keys create --role R --tenant T` makes one")
    for key in found:
        state = f"revoked {render.iso(key.revoked_at)}" if key.revoked_at else "active"
        label = f"  {key.name}" if key.name else ""
        click.echo(f"{key.id}  {key.role.value:<8}  {key.tenant}  {state}{label}")


@keys.command("revoke")
@click.argument("key_id")
@json_option
@with_app(writes=True)
async def keys_revoke(app: App, key_id: str, as_json: bool) -> None:
    """Revoke a key: requests with it are refused from now on."""
    key = await (await app.open_store()).revoke_api_key(key_id)
    if key is None:
        raise click.ClickException(f"no API key {key_id!r}")
    if as_json:
        render.print_json(key_json(key))
    else:
        click.echo(f"key {key.id} revoked")


__all__ = ["keys", "server"]
