"""A small MCP server (the ``mcp`` SDK's ``MCPServer``), run as its own process by the tests.

Every call it receives is appended to the JSON-lines file ``MCP_CALLS`` (tool, arguments, the
``_meta`` of the request and this process's pid), so a test sees what reached the server and
how often. ``python tool_server.py [stdio | http PORT]``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

server = MCPServer("aetheris-test-tools")


def _log(tool: str, arguments: dict[str, Any], ctx: Context) -> None:
    meta = ctx.request_context.meta or {}
    entry = {
        "tool": tool,
        "arguments": arguments,
        "meta": dict(meta),
        "pid": os.getpid(),
        "at": time.time(),
    }
    with open(os.environ["MCP_CALLS"], "a", encoding="utf-8") as calls:
        calls.write(json.dumps(entry) + "\n")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def add(a: int, b: int, ctx: Context) -> int:
    """Add two numbers (reads nothing, changes nothing)."""
    _log("add", {"a": a, "b": b}, ctx)
    return a + b


@server.tool(annotations=ToolAnnotations(idempotent_hint=True, destructive_hint=False))
def put(key: str, value: str, ctx: Context) -> str:
    """Store a value under a key (repeating it changes nothing more)."""
    _log("put", {"key": key, "value": value}, ctx)
    return f"stored {key}"


@server.tool()
def send(to: str, text: str, ctx: Context) -> dict[str, Any]:
    """Send a message: no hints, so it must never be sent twice."""
    _log("send", {"to": to, "text": text}, ctx)
    return {"sent_to": to, "pid": os.getpid()}


@server.tool()
def slow_send(to: str, seconds: float, ctx: Context) -> str:
    """Send a message, taking ``seconds`` (a test kills the worker meanwhile)."""
    _log("slow_send", {"to": to, "seconds": seconds}, ctx)
    time.sleep(seconds)
    return f"sent to {to}"


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def pid(ctx: Context) -> int:
    """This server process's id."""
    _log("pid", {}, ctx)
    return os.getpid()


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def fail(message: str) -> str:
    """Fail with ``message`` (an MCP error result)."""
    raise ToolError(message)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "http":
        server.run("streamable-http", port=int(sys.argv[2]), stateless_http=True)
    else:
        server.run("stdio")
