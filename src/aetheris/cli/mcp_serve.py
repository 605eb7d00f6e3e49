"""``aetheris mcp serve``: Aetheris as an MCP server (:mod:`aetheris.api.mcp_server`).

Every tool call goes through the HTTP API with an API key, so the key's role and tenant apply
exactly as on the API: through a server (``--url``/``AETHERIS_URL``), or through the API served
in this process over the database (as other commands use it when no server is set).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click
import httpx

from aetheris.app import App
from aetheris.cli.base import Env, database_option, main, pass_env, run
from aetheris.client import Client
from aetheris.errors import AetherisError

if TYPE_CHECKING:
    from aetheris.api.mcp_server import Backend

IN_PROCESS = "http://aetheris.local"  # the API served in this process: no socket, no host


@main.group()
def mcp() -> None:
    """Aetheris as an MCP server, for assistants and IDEs that speak MCP."""


@mcp.command()
@click.option(
    "--transport",
    type=click.Choice(["stdio", "http"]),
    default="stdio",
    show_default=True,
    help="stdio (the MCP client starts this command) or streamable HTTP (at /mcp).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP: the address.")
@click.option(
    "--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="HTTP: port."
)
@click.option(
    "--app",
    "app_spec",
    metavar="MOD:APP",
    help="On the database: the App whose agents are known (default: those workers registered).",
)
@click.option(
    "--no-auth",
    is_flag=True,
    help="On the database over HTTP: accept calls without an API key, as an admin of every "
    "tenant (on a loopback address only).",
)
@database_option
@pass_env
def serve(
    env: Env, transport: str, host: str, port: int, app_spec: str | None, no_auth: bool
) -> None:
    """Serve the tools start_job, get_job, get_trace, list_jobs, list_agents, list_approvals
    and answer_approval until the client hangs up (stdio), SIGTERM or Ctrl-C.

    Each call acts with an API key and may do what its role allows: over stdio the key of
    --api-key (AETHERIS_API_KEY); over HTTP each request's `Authorization: Bearer KEY`. With
    no server set, calls go to the database; over stdio without a key they act as its
    owner, as other commands do."""
    create_mcp_server = _sdk().create_mcp_server
    app, url, wire = _wire(env, transport, host, app_spec, no_auth)
    default = (env.api_key or "") if transport == "stdio" else ""

    def connect(key: str | None) -> Backend:  # mypy: a Client is what the tools need
        return Client(url, key or default, transport=wire)

    server = create_mcp_server(connect)

    async def serving() -> None:
        try:
            if transport == "stdio":
                await server.run_stdio_async()
            else:
                click.echo(f"MCP (streamable HTTP) at http://{host}:{port}/mcp", err=True)
                await server.run_streamable_http_async(host=host, port=port)
        finally:
            await wire.aclose()
            if app is not None:
                await app.close()

    run(serving(), app.database_url if app else None, server=None if app else url)


def _sdk() -> Any:
    """:mod:`aetheris.api.mcp_server`, or a clear error without the mcp extra."""
    try:
        from aetheris.api import mcp_server
    except ImportError as exc:
        raise click.ClickException(
            f"Aetheris as an MCP server needs the mcp extra (pip install 'aetheris[mcp]'): {exc}"
        ) from None
    return mcp_server


def mounter(host: str) -> Callable[[Any], None]:
    """What mounts the MCP tools at ``/mcp`` of the API ``aetheris server`` serves: each call
    goes back into that API, with the request's key."""
    sdk = _sdk()

    def extend(api: Any) -> None:
        wire = httpx.ASGITransport(api)

        def connect(key: str | None) -> Backend:
            return Client(IN_PROCESS, key or "", transport=wire)

        sdk.mount(api, sdk.create_mcp_server(connect), host=host)

    return extend


def _wire(
    env: Env, transport: str, host: str, app_spec: str | None, no_auth: bool
) -> tuple[App | None, str, httpx.AsyncBaseTransport]:
    """Where calls go: a server over the network, or the API in this process on the
    database (with auth unless stdio without a key, or --no-auth on loopback)."""
    from aetheris.api import create_api
    from aetheris.api.server import check_binding

    if env.remote:
        if app_spec or no_auth:
            raise click.UsageError(
                f"--app and --no-auth are for the database, but a server is set "
                f"({env.server_url}, by --url or AETHERIS_URL), whose App and keys apply: "
                "unset it, or pass --database-url"
            )
        return None, env.server_url or "", httpx.AsyncHTTPTransport()
    if transport == "stdio":
        auth = bool(env.api_key) and not no_auth
    else:
        auth = not no_auth
        try:
            check_binding(host, auth)
        except AetherisError as exc:
            raise click.UsageError(str(exc)) from None
    app = env.app(app_spec)
    api: Any = create_api(app, auth=auth, deliver_webhooks=False)
    if not auth:
        print("aetheris mcp: calls act as an admin of every tenant (no key)", file=sys.stderr)
    return app, IN_PROCESS, httpx.ASGITransport(api)
