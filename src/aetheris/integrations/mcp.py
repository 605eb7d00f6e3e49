"""MCP host: the tools of MCP servers, called by agents as journaled Aetheris tools.

An App's MCP servers are declared in Python (``mcp_host(app).server("files", command=[...])``
or ``url="http://host/mcp"``) or in ``aetheris.toml`` (``[mcp.servers.files]``, read by every
command that loads the App). A worker connects to a server the first time one of its tools is
called (a stdio server is started as a child process), lists its tools, and keeps the session;
a server that died is started (or connected) again at the next call.

Each MCP tool is an Aetheris tool named ``server.tool``, journaled like any other:

* its effect class comes from the configuration (``effects = {tool = "idempotent"}``), else
  from its annotations: ``readOnlyHint`` → ``pure``, ``idempotentHint`` → ``idempotent``,
  anything else ``at_most_once``: a tool that does not say it is safe to repeat is never
  dispatched twice on a guess;
* the call's idempotency key (and job id) travel in the request's ``_meta``
  (:data:`IDEMPOTENCY_KEY_META`), so the server can deduplicate;
* a connection lost before the request went out is retried (nothing was dispatched); lost while
  the call was in flight, a ``pure`` or ``idempotent`` call is retried on a new session, while
  an ``at_most_once`` one has no outcome to record: the run stops and the ledger's rules apply
  (the intent without outcome is *in doubt*, for ``reconcile`` or an operator), exactly as
  after a crash of the worker;
* a tool's error result (``isError``) is the tool's failure, raised as :class:`MCPToolError`.

Requires the ``mcp`` extra (``pip install 'aetheris[mcp]'``, the ``mcp`` SDK 2.x).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import anyio
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, TextContent
from mcp.types import Tool as WireTool

from aetheris.app import App
from aetheris.errors import (
    AetherisError,
    ConfigurationError,
    RetryableError,
    RuntimeFailure,
)
from aetheris.ledger import journaled_call
from aetheris.store.port import EffectClass
from aetheris.tools import RateLimit, RetryPolicy, ToolContext, tool_context_var
from mcp import Client, StdioServerParameters

__all__ = [
    "IDEMPOTENCY_KEY_META",
    "JOB_ID_META",
    "MCPHost",
    "MCPServer",
    "MCPTool",
    "MCPToolError",
    "effect_of",
    "mcp_host",
]

IDEMPOTENCY_KEY_META = "aetheris/idempotency_key"
JOB_ID_META = "aetheris/job_id"
_LOST = (
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
    ConnectionError,
    OSError,
)
_CONNECTION_CLOSED = -32000


class MCPToolError(AetherisError):
    """An MCP tool answered with an error result (``isError``): the tool's own failure."""


def effect_of(tool: WireTool, configured: str | None = None) -> tuple[EffectClass, str]:
    """The effect class of an MCP tool and where it came from (``config`` or ``annotations``)."""
    if configured is not None:
        return _effect(configured, tool.name), "config"
    hints = tool.annotations
    if hints is not None and hints.read_only_hint:
        return EffectClass.PURE, "annotations"
    if hints is not None and hints.idempotent_hint:
        return EffectClass.IDEMPOTENT, "annotations"
    return EffectClass.AT_MOST_ONCE, "annotations"


def _effect(value: str, tool: str) -> EffectClass:
    try:
        return EffectClass(value)
    except ValueError:
        raise ConfigurationError(
            f"MCP tool {tool!r}: effect must be one of {[e.value for e in EffectClass]}, "
            f"got {value!r}"
        ) from None


@dataclass(frozen=True)
class MCPTool:
    """One tool of an MCP server, as the tool registry shows it and agents call it."""

    server: str
    remote_name: str
    description: str | None
    input_schema: dict[str, Any] | None
    effect: EffectClass
    effect_from: str
    requires_approval: bool
    rate_limit: RateLimit | None
    retry: RetryPolicy

    @property
    def name(self) -> str:
        return f"{self.server}.{self.remote_name}"

    def describe(self) -> dict[str, Any]:
        """The tool's entry in the tool registry (as :meth:`aetheris.tools.ToolDef.describe`)."""
        limit = self.rate_limit
        retry = self.retry
        return {
            "name": self.name,
            "source": f"mcp:{self.server}",
            "effect": self.effect.value,
            "effect_from": self.effect_from,
            "requires_approval": self.requires_approval,
            "retry": {
                "max_attempts": retry.max_attempts,
                "initial_interval": retry.initial_interval,
                "backoff": retry.backoff,
                "max_interval": retry.max_interval,
            },
            "rate_limit": None if limit is None else {"per_second": limit.per_second,
                                                      "burst": limit.burst},
            "description": self.description,
            "input_schema": self.input_schema,
        }  # fmt: skip


class _Session:
    """A live MCP session, owned by one task: anyio's scopes must close in the task that
    opened them, and calls come from many jobs' tasks."""

    def __init__(self, server: MCPServer) -> None:
        self.server = server
        self.client: Client | None = None
        self.loop = asyncio.get_running_loop()
        self.dead = False
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> Client:
        ready: asyncio.Future[Client] = self.loop.create_future()
        self._task = asyncio.create_task(self._own(ready), name=f"mcp:{self.server.name}")
        try:
            return await asyncio.wait_for(asyncio.shield(ready), self.server.timeout)
        except BaseException:
            await self.close()
            raise

    async def _own(self, ready: asyncio.Future[Client]) -> None:
        try:
            async with Client(self.server.transport()) as client:
                self.client = client
                ready.set_result(client)
                await self._stop.wait()
        except BaseException as exc:  # the session ended: a dead server, or close()
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else RetryableError(exc))
        finally:
            self.dead = True

    async def close(self) -> None:
        self.dead = True
        self._stop.set()
        task = self._task
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(task, 5.0)
            except (TimeoutError, asyncio.CancelledError, Exception):
                task.cancel()


@dataclass
class MCPServer:
    """An MCP server an App uses: a stdio ``command`` or a streamable HTTP ``url``.

    ``effects`` gives tools an effect class over their annotations; ``approval`` names tools
    (or ``True``: all) whose every call waits for a person's approval; ``rate_limits`` are
    calls a second per tool; ``retry`` is the retry policy of its tools; ``timeout`` bounds a
    connection and each call (seconds).
    """

    name: str
    command: Sequence[str] | None = None
    url: str | None = None
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    headers: Mapping[str, str] | None = None
    effects: Mapping[str, str] = field(default_factory=dict)
    approval: bool | Iterable[str] = False
    rate_limits: Mapping[str, float] = field(default_factory=dict)
    retry: RetryPolicy | None = None
    timeout: float = 60.0
    errlog: TextIO | None = None
    _tools: dict[str, MCPTool] | None = field(default=None, init=False, repr=False)
    _session: _Session | None = field(default=None, init=False, repr=False)
    _lock: asyncio.Lock | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.name or "." in self.name:
            raise ConfigurationError(f"an MCP server needs a name without '.', got {self.name!r}")
        if (self.command is None) == (self.url is None):
            raise ConfigurationError(f"MCP server {self.name!r}: give a command or a url (one)")
        if self.command is not None and (isinstance(self.command, str) or not self.command):
            raise ConfigurationError(
                f"MCP server {self.name!r}: command must be a list (program and arguments)"
            )
        for tool, effect in self.effects.items():
            _effect(effect, f"{self.name}.{tool}")
        for tool, rate in self.rate_limits.items():
            if RateLimit.of(rate) is None:
                raise ConfigurationError(f"MCP tool {self.name}.{tool}: no rate limit given")
        self.approval = self.approval if isinstance(self.approval, bool) else set(self.approval)

    # -- connection ---------------------------------------------------------------------------

    def transport(self) -> Any:
        """The SDK's transport to this server, for one session."""
        if self.url is not None:
            if not self.headers:
                return self.url
            import httpx2  # the mcp SDK's HTTP client
            from mcp.client.streamable_http import streamable_http_client

            http = httpx2.AsyncClient(headers=dict(self.headers), timeout=self.timeout)
            return streamable_http_client(self.url, http_client=http)
        assert self.command is not None
        program, *args = self.command
        params = StdioServerParameters(
            command=program, args=args, env=dict(self.env or {}) or None, cwd=self.cwd
        )
        return stdio_client(params, errlog=self.errlog or sys.stderr)

    async def _client(self) -> Client:
        """The live session's client; a dead (or other event loop's) session is replaced."""
        if self._lock is None or self._lock._get_loop() is not asyncio.get_running_loop():  # type: ignore[attr-defined]
            self._lock = asyncio.Lock()
        async with self._lock:
            session = self._session
            here = session is not None and session.loop is asyncio.get_running_loop()
            if here and session is not None and not session.dead and session.client is not None:
                return session.client
            if here and session is not None:
                await session.close()
            self._session = _Session(self)
            try:
                return await self._session.open()
            except Exception as exc:
                raise RetryableError(f"MCP server {self.name!r}: cannot connect: {exc}") from exc

    async def close(self) -> None:
        """End the session (a stdio server's process ends with it)."""
        session, self._session = self._session, None
        if session is not None and session.loop is asyncio.get_running_loop():
            await session.close()

    # -- tools --------------------------------------------------------------------------------

    async def tools(self) -> list[MCPTool]:
        """This server's tools (listed once per process, on first use)."""
        if self._tools is None:
            client = await self._client()
            listing: list[WireTool] = []
            cursor: str | None = None
            while True:
                page = await client.list_tools(cursor=cursor)
                listing.extend(page.tools)
                cursor = page.next_cursor
                if cursor is None:
                    break
            self._tools = {tool.name: self._describe(tool) for tool in listing}
            unknown = set(self.effects) - set(self._tools)
            if unknown:
                raise ConfigurationError(
                    f"MCP server {self.name!r} has no tools {sorted(unknown)} (effects given)"
                )
        return list(self._tools.values())

    def _describe(self, tool: WireTool) -> MCPTool:
        effect, source = effect_of(tool, self.effects.get(tool.name))
        approval = self.approval if isinstance(self.approval, bool) else tool.name in self.approval
        return MCPTool(
            server=self.name,
            remote_name=tool.name,
            description=tool.description,
            input_schema=dict(tool.input_schema) if tool.input_schema else None,
            effect=effect,
            effect_from=source,
            requires_approval=approval,
            rate_limit=RateLimit.of(self.rate_limits.get(tool.name)),
            retry=self.retry or RetryPolicy(give_up_on=(MCPToolError,)),
        )

    async def tool(self, name: str) -> MCPTool:
        """The tool ``name`` of this server (``ConfigurationError`` if it has none)."""
        tools = {tool.remote_name: tool for tool in await self.tools()}
        if name not in tools:
            raise ConfigurationError(
                f"MCP server {self.name!r} has no tool {name!r} (it has {sorted(tools)})"
            )
        return tools[name]

    async def call(self, tool: str, arguments: Mapping[str, Any] | None = None) -> Any:
        """Call ``tool`` with ``arguments``: inside a running agent, a journaled tool call that
        follows the ledger rules of the tool's effect class; outside one, a plain call.

        The result is the tool's structured content when it has one, else its text."""
        found = await self.tool(tool)

        async def dispatch(**kwargs: Any) -> Any:
            return await self._dispatch(found, kwargs)

        return await journaled_call(
            found.name,
            dispatch,
            arguments,
            effect=found.effect,
            retry=found.retry,
            requires_approval=found.requires_approval,
            rate_limit=found.rate_limit,
            schema=found.input_schema,
        )

    async def _dispatch(self, tool: MCPTool, arguments: dict[str, Any]) -> Any:
        client = await self._client()  # RetryableError if it cannot connect: nothing went out
        if tool.effect is EffectClass.AT_MOST_ONCE:
            await self._alive(client)  # a dead session is found before anything is sent
        ctx = tool_context_var.get()
        try:
            result = await client.call_tool(
                tool.remote_name,
                arguments,
                read_timeout_seconds=self.timeout,
                meta=_meta(ctx),  # type: ignore[arg-type]
            )
        except (MCPError, *_LOST) as exc:
            if isinstance(exc, MCPError) and exc.code != _CONNECTION_CLOSED:
                raise MCPToolError(f"{tool.name}: {exc}") from exc
            await self._lost()
            if tool.effect is EffectClass.AT_MOST_ONCE:
                # The request may have been carried out: no outcome is recorded; the intent stays
                # without one, and the job's next run finds it in doubt.
                raise RuntimeFailure(
                    f"MCP server {self.name!r} was lost during a call of {tool.name}: "
                    "its outcome is unknown"
                ) from exc
            raise RetryableError(f"MCP server {self.name!r} was lost: {exc}") from exc
        return _result(tool, result)

    async def _alive(self, client: Client) -> None:
        try:
            await client.list_tools(cache_mode="refresh")  # ping is gone from the protocol
        except (MCPError, *_LOST) as exc:
            await self._lost()
            raise RetryableError(f"MCP server {self.name!r} was lost: {exc}") from exc

    async def _lost(self) -> None:
        session = self._session
        if session is not None:
            session.dead = True
            with contextlib.suppress(Exception):
                await self.close()


def _meta(ctx: ToolContext | None) -> dict[str, Any] | None:
    if ctx is None:
        return None
    return {IDEMPOTENCY_KEY_META: ctx.idempotency_key, JOB_ID_META: ctx.job_id}


def _result(tool: MCPTool, result: CallToolResult) -> Any:
    texts = [block.text for block in result.content if isinstance(block, TextContent)]
    if result.is_error:
        raise MCPToolError(f"{tool.name}: {' '.join(texts) or 'the tool reported an error'}")
    if result.structured_content is not None:
        return result.structured_content
    if len(texts) == len(result.content):
        return "\n".join(texts)
    return [block.model_dump(mode="json", by_alias=True) for block in result.content]


class MCPHost:
    """The MCP servers of one App (:func:`mcp_host`), and their tools by ``server.tool``."""

    def __init__(self) -> None:
        self.servers: dict[str, MCPServer] = {}

    def server(self, name: str, **options: Any) -> MCPServer:
        """Declare an MCP server (the options of :class:`MCPServer`)."""
        return self.add(MCPServer(name, **options))

    def add(self, server: MCPServer) -> MCPServer:
        if server.name in self.servers:
            raise ConfigurationError(f"MCP server {server.name!r} is already declared")
        self.servers[server.name] = server
        return server

    def configure(self, settings: Mapping[str, Mapping[str, Any]]) -> None:
        """Declare the servers of ``[mcp.servers.NAME]`` tables (``aetheris.toml``); a server
        the App declares itself under that name wins."""
        for name, table in settings.items():
            if name not in self.servers:
                self.add(server_from_settings(name, table))

    async def tools(self) -> list[MCPTool]:
        """Every tool of every server (each server is connected to list them)."""
        found: list[MCPTool] = []
        for server in self.servers.values():
            found.extend(await server.tools())
        return found

    async def call(self, name: str, arguments: Mapping[str, Any] | None = None) -> Any:
        """Call the tool ``server.tool`` (see :meth:`MCPServer.call`)."""
        server, dot, tool = name.partition(".")
        if not dot or server not in self.servers:
            raise ConfigurationError(
                f"no MCP tool {name!r}: MCP tools are named server.tool, and the servers "
                f"declared are {sorted(self.servers)}"
            )
        return await self.servers[server].call(tool, arguments)

    async def close(self) -> None:
        for server in self.servers.values():
            await server.close()


_SETTINGS: dict[str, type | tuple[type, ...]] = {
    "command": list,
    "url": str,
    "env": dict,
    "cwd": str,
    "headers": dict,
    "effects": dict,
    "approval": (bool, list),
    "rate_limits": dict,
    "timeout": (int, float),
}


def server_from_settings(name: str, table: Mapping[str, Any]) -> MCPServer:
    """An :class:`MCPServer` from its ``aetheris.toml`` table; a wrong key or type is named."""
    options: dict[str, Any] = {}
    for key, value in table.items():
        kind = _SETTINGS.get(key)
        if kind is None:
            raise ConfigurationError(
                f"[mcp.servers.{name}]: unknown setting {key!r} (known: {', '.join(_SETTINGS)})"
            )
        if not isinstance(value, kind):
            raise ConfigurationError(f"[mcp.servers.{name}] {key}: wrong type ({value!r})")
        options[key] = value
    return MCPServer(name, **options)


_hosts: weakref.WeakKeyDictionary[App, MCPHost] = weakref.WeakKeyDictionary()


def mcp_host(app: App) -> MCPHost:
    """The MCP host of ``app`` (made on first use): declare servers on it, call their tools."""
    host = _hosts.get(app)
    if host is None:
        host = _hosts[app] = MCPHost()
    return host
