"""``aetheris tools list``: the tool registry of an App, its native tools and those of its MCP
servers, each with its JSON schema, effect class, retry policy, rate limit and approval."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from aetheris.app import App
from aetheris.cli import config as project_config
from aetheris.cli import render
from aetheris.cli.base import json_option, load_app, main


@main.group()
def tools() -> None:
    """The tools agents call: native ones and those of MCP servers."""


@tools.command("list")
@click.option("--app", "app_spec", metavar="MOD:APP", help="The App (default: aetheris.toml's).")
@json_option
@click.pass_context
def tools_list(ctx: click.Context, app_spec: str | None, as_json: bool) -> None:
    """Every tool of the App, with its effect class, retry policy, rate limit and approval
    (MCP servers are connected to list theirs)."""
    settings = ctx.find_root().meta.get(project_config.FILENAME)
    spec = app_spec or (settings.app if settings is not None else None)
    if not spec:
        raise click.UsageError("give --app MOD:APP (or run in a folder with an aetheris.toml)")
    entries = asyncio.run(registry(load_app(spec)))
    if as_json:
        render.print_json(entries)
        return
    if not entries:
        click.echo("no tools")
    for entry in entries:
        limit = entry["rate_limit"]
        rate = f"{limit['per_second']:g}/s" if limit else "-"
        approval = "approval" if entry["requires_approval"] else "-"
        retries = entry["retry"]["max_attempts"]
        click.echo(
            f"{entry['name']:<28} {entry['effect']:<13} {entry['source']:<14} "
            f"retry x{retries:<3} rate {rate:<8} {approval}"
        )


async def registry(app: App) -> list[dict[str, Any]]:
    """The registry entries of ``app``'s tools: native ones, then each MCP server's."""
    entries = [tool.describe() for tool in app.tools.values()]
    try:
        from aetheris.integrations.mcp import mcp_host
    except ImportError:  # no mcp extra: no MCP servers either
        return entries
    host = mcp_host(app)
    try:
        entries.extend(tool.describe() for tool in await host.tools())
    except Exception as exc:
        raise click.ClickException(f"cannot list the tools of the MCP servers: {exc}") from None
    finally:
        await host.close()
    return entries
