"""An App whose agents call the tools of ``tool_server.py`` (an MCP server process) through
the MCP host: used in-process and by worker processes (``tests.mcp.mcp_app:app``)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from aetheris import App, Context
from aetheris.integrations.mcp import MCPHost, mcp_host

SERVER = Path(__file__).with_name("tool_server.py")
QUIET = open(os.devnull, "w")  # noqa: SIM115 - the servers' own logs, for the process's life


def make_app(url: str | None = None, calls: str | None = None, **options: Any) -> App:
    """An App on ``url`` with the test server as ``tools`` (and ``limited``: ``add`` at 2
    calls a second); the server appends each call it gets to ``calls`` (``MCP_CALLS``)."""
    app = App(url, **options)
    env = {"MCP_CALLS": calls or os.environ["MCP_CALLS"]}
    host = mcp_host(app)
    command = [sys.executable, str(SERVER)]
    errlog = QUIET
    host.server("tools", command=command, env=env, errlog=errlog)
    host.server("limited", command=command, env=env, errlog=errlog, rate_limits={"add": 2.0})
    _agents(app, host)
    return app


def _agents(app: App, host: MCPHost) -> None:
    @app.tool(effect="at_most_once", rate_limit=3, requires_approval=True)
    async def notify(to: str, times: int = 1) -> str:
        return f"notified {to} x{times}"

    @app.agent
    async def roundtrip(ctx: Context) -> dict[str, Any]:
        total = await host.call("tools.add", {"a": 2, "b": 3})
        stored = await host.call("tools.put", {"key": "k", "value": "v"})
        sent = await host.call("tools.send", {"to": "ana", "text": "hello"})
        return {"total": total, "stored": stored, "sent": sent}

    @app.agent
    async def restarted(ctx: Context) -> list[int]:
        first = (await host.call("tools.pid"))["result"]
        await ctx.step("kill the server", os.kill, first, signal.SIGKILL)
        second = (await host.call("tools.pid"))["result"]
        sent = await host.call("tools.send", {"to": "bo", "text": "after the restart"})
        return [first, second, sent["pid"]]

    @app.agent
    async def slow(ctx: Context, seconds: float = 60.0) -> str:
        result: str = await host.call("tools.slow_send", {"to": "cy", "seconds": seconds})
        return result

    @app.agent
    async def failing(ctx: Context) -> str:
        result: str = await host.call("tools.fail", {"message": "no such account"})
        return result

    @app.agent
    async def limited(ctx: Context, n: int) -> Any:
        return await host.call("limited.add", {"a": n, "b": 0})


app = make_app() if "MCP_CALLS" in os.environ else App()
