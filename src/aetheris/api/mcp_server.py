"""Aetheris as an MCP server (``aetheris mcp serve``): an assistant or an IDE that speaks MCP
starts agents, watches their jobs and answers their approvals with the tools of :class:`Tools`.

The tools ask a :class:`Backend` obtained for one API key (``connect(key)``). The shell gives
an :class:`aetheris.Client`, on a server or on the API served in-process over a database, so a
call may do what the key's role allows on the key's tenant's jobs and nothing more, decided by
the same code as on the HTTP API (this module checks no role itself: a second copy of the rules
could drift). Over stdio the key is the one the server was started with; over streamable HTTP
it is each request's ``Authorization: Bearer KEY``, so every assistant acts with its own key.

A result is the HTTP API's JSON (a job as ``GET /v1/jobs/{id}`` answers it, ...). A refusal is
an MCP tool error ``code: message`` with the API's error code (``unknown_agent``, ``not_found``,
``invalid_input``, ``forbidden``, ``unauthorized``, ...) and its message, which names the
problem (the agents that exist, the role that may not, the input field at fault).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, Protocol

from fastapi import FastAPI
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.types import ToolAnnotations
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from aetheris.api.auth import identify
from aetheris.api.errors import ApiError, respond
from aetheris.api.schemas import EventOut, JobOut, SignalOut, iso
from aetheris.errors import (
    AetherisError,
    AuthError,
    Conflict,
    IdempotencyConflict,
    InvalidInput,
    JobNotFound,
    PermissionDenied,
    ServerError,
    UnknownAgent,
)
from aetheris.journal import Event
from aetheris.models import Job, JobStatus, Signal

# The API's error codes, most specific first (an MCP client reads the code before the colon).
_CODES: list[tuple[type[AetherisError], str]] = [
    (JobNotFound, "not_found"),
    (UnknownAgent, "unknown_agent"),
    (IdempotencyConflict, "idempotency_conflict"),
    (Conflict, "conflict"),
    (InvalidInput, "invalid_input"),
    (PermissionDenied, "forbidden"),
    (AuthError, "unauthorized"),
    (ServerError, "server_error"),
]
TRACE_PAGE = 200  # events in one get_trace answer, at most


class Started(Protocol):
    """What starting a job answers: its id."""

    @property
    def job_id(self) -> str: ...


class PendingApproval(Protocol):
    """An approval request waiting for a person (as ``GET /v1/approvals`` lists it)."""

    @property
    def job_id(self) -> str: ...
    @property
    def agent(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def position(self) -> int | None: ...
    @property
    def args_hash(self) -> str | None: ...
    @property
    def request(self) -> dict[str, Any]: ...
    @property
    def since(self) -> float | None: ...


class AgentInfo(Protocol):
    """An agent: its input schema, and how many live workers serve it."""

    @property
    def name(self) -> str: ...
    @property
    def input_schema(self) -> dict[str, Any] | None: ...
    @property
    def workers(self) -> int: ...


class Backend(Protocol):
    """The verbs the tools use, with one key's rights (:class:`aetheris.Client` is one)."""

    async def start(
        self,
        agent: str,
        input: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Started: ...
    async def get_job(self, job_id: str) -> Job: ...
    async def list_jobs(
        self, *, status: JobStatus | str | None = None, limit: int = 100, agent: str | None = None
    ) -> list[Job]: ...
    async def events(self, job_id: str, *, after: int = -1) -> list[Event]: ...
    async def agents(self) -> Sequence[AgentInfo]: ...
    async def approvals(self, *, limit: int = 100) -> Sequence[PendingApproval]: ...
    async def approve(
        self,
        job_id: str,
        *,
        position: int | None = None,
        comment: str | None = None,
        args_hash: str | None = None,
    ) -> Signal: ...
    async def reject(
        self,
        job_id: str,
        *,
        position: int | None = None,
        reason: str | None = None,
        args_hash: str | None = None,
    ) -> Signal: ...


Connect = Callable[[str | None], Backend]
"""The backend acting with an API key (``None``: the one the server was started with)."""


def refusal(exc: AetherisError) -> ToolError:
    """An Aetheris error as the tool error an MCP client sees: ``code: message``."""
    code = next((c for kind, c in _CODES if isinstance(exc, kind)), "error")
    return ToolError(f"{code}: {exc}")


def job_json(job: Job) -> dict[str, Any]:
    """A job as the HTTP API shows it, with what a parked job waits for."""
    return {**JobOut.of(job).model_dump(mode="json"), "waiting_for": job.waiting_for}


def approval_json(found: PendingApproval) -> dict[str, Any]:
    return {
        "job_id": found.job_id,
        "agent": found.agent,
        "name": found.name,
        "position": found.position,
        "args_hash": found.args_hash,
        "request": found.request,
        "since": iso(found.since),
    }


def agent_json(found: AgentInfo) -> dict[str, Any]:
    return {"name": found.name, "input_schema": found.input_schema, "workers": found.workers}


def bearer(headers: Mapping[str, str] | None) -> str | None:
    """The key of ``Authorization: Bearer KEY`` (``None``: no such header, as over stdio)."""
    if not headers:
        return None
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _status(text: str | None) -> JobStatus | None:
    if text is None:
        return None
    try:
        return JobStatus(text)
    except ValueError:
        known = ", ".join(s.value for s in JobStatus)
        raise InvalidInput(f"status {text!r} is not a job status (one of {known})") from None


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    try:
        yield
    except AetherisError as exc:
        raise refusal(exc) from None


def _describe(name: str) -> str:
    return (_DOCS[name].strip()).replace("\n    ", "\n")


class Tools:
    """The tools, each asking the backend of the caller's key (see the module's docstring)."""

    def __init__(self, connect: Connect) -> None:
        self.connect = connect

    def backend(self, ctx: Context) -> Backend:
        return self.connect(bearer(ctx.headers))

    async def start_job(
        self,
        agent: str,
        ctx: Context,
        input: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        with _refusals():
            client = self.backend(ctx)
            started = await client.start(agent, input or {}, idempotency_key=idempotency_key)
            return job_json(await client.get_job(started.job_id))

    async def get_job(self, job_id: str, ctx: Context) -> dict[str, Any]:
        with _refusals():
            return job_json(await self.backend(ctx).get_job(job_id))

    async def get_trace(
        self, job_id: str, ctx: Context, after: int = -1, limit: int = TRACE_PAGE
    ) -> dict[str, Any]:
        with _refusals():
            _check_limit(limit, TRACE_PAGE)
            client = self.backend(ctx)
            job = await client.get_job(job_id)
            events = await client.events(job_id, after=after)
            shown = events[:limit]
            return {
                "job": job_json(job),
                "events": [EventOut.of(e).model_dump(mode="json") for e in shown],
                "next_after": shown[-1].seq if len(events) > limit and shown else None,
            }

    async def list_jobs(
        self, ctx: Context, status: str | None = None, agent: str | None = None, limit: int = 20
    ) -> dict[str, Any]:
        with _refusals():
            _check_limit(limit, 500)
            found = await self.backend(ctx).list_jobs(
                status=_status(status), agent=agent, limit=limit
            )
            return {"jobs": [job_json(j) for j in found]}

    async def list_agents(self, ctx: Context) -> dict[str, Any]:
        with _refusals():
            return {"agents": [agent_json(a) for a in await self.backend(ctx).agents()]}

    async def list_approvals(self, ctx: Context, limit: int = 50) -> dict[str, Any]:
        with _refusals():
            _check_limit(limit, 500)
            found = await self.backend(ctx).approvals(limit=limit)
            return {"approvals": [approval_json(a) for a in found]}

    async def answer_approval(
        self,
        job_id: str,
        decision: Literal["approve", "reject"],
        ctx: Context,
        comment: str | None = None,
        position: int | None = None,
        args_hash: str | None = None,
    ) -> dict[str, Any]:
        with _refusals():
            client = self.backend(ctx)
            if decision == "approve":
                signal = await client.approve(
                    job_id, position=position, comment=comment, args_hash=args_hash
                )
            else:
                signal = await client.reject(
                    job_id, position=position, reason=comment, args_hash=args_hash
                )
            return {
                "signal": SignalOut.of(signal).model_dump(mode="json"),
                "job": job_json(await client.get_job(job_id)),
            }


def create_mcp_server(connect: Connect, *, name: str = "aetheris") -> MCPServer[Any]:
    """An MCP server whose tools drive Aetheris through ``connect(key)``; serve it with the
    SDK (``run_stdio_async()``, ``run_streamable_http_async(host=, port=)``, or mount
    ``streamable_http_app()``)."""
    server: MCPServer[Any] = MCPServer(
        name, instructions=INSTRUCTIONS, log_level="WARNING", subscriptions=False
    )
    tools = Tools(connect)
    for tool, hints in _ANNOTATIONS.items():
        server.add_tool(getattr(tools, tool), description=_describe(tool), annotations=hints)
    return server


class _Gate:
    """``/mcp`` of the API: the request's key is checked as on ``/v1`` (401 without a valid
    one, unless auth is off), then the MCP session manager answers."""

    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        self.manager = manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await identify(Request(scope, receive))
        except ApiError as exc:
            await respond(exc.status, exc.code, exc.message, exc.details)(scope, receive, send)
            return
        await self.manager.handle_request(scope, receive, send)


def mount(api: FastAPI, server: MCPServer[Any], *, host: str = "127.0.0.1") -> None:
    """Serve ``server`` over streamable HTTP at ``/mcp`` of ``api``, behind the API's keys
    (``host``: the address served, for the SDK's DNS-rebinding protection on loopback)."""
    server.streamable_http_app(host=host)  # makes the session manager
    manager = server.session_manager
    api.router.routes.append(Route("/mcp", _Gate(manager), methods=["GET", "POST", "DELETE"]))
    inner = api.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        async with manager.run(), inner(app) as state:
            yield state

    api.router.lifespan_context = lifespan


def _check_limit(limit: int, most: int) -> None:
    if not 1 <= limit <= most:
        raise InvalidInput(f"limit must be between 1 and {most}, got {limit}")


INSTRUCTIONS = """Aetheris runs AI agents durably: each run is a job with a journal (its trace).
Start a job of an agent (list_agents gives their input schemas), follow it with get_job and
get_trace, and answer the approvals jobs wait for (list_approvals, answer_approval). What you
may do is what your Aetheris API key's role allows."""

_DOCS = {
    "start_job": """Start a job of `agent` with `input` (a JSON object matching the agent's
    input schema, see list_agents). With `idempotency_key`, starting again with the same key
    gives the same job. Answers the job (id, status, ...).""",
    "get_job": """A job: its status (pending, running, parked, succeeded, failed, cancelled,
    compensated), why it is parked and what it waits for, its input, result or error.""",
    "get_trace": """A job and its journal: every step, tool call, model call, approval and
    signal, in order, as events. Page with `after` (the last `seq` seen; `next_after` says
    where the next page starts when there are more than `limit`).""",
    "list_jobs": """Jobs, newest first; `status` (pending, running, parked, succeeded, failed,
    cancelled, compensated) and `agent` filter them.""",
    "list_agents": """The agents that can be started: name, input JSON schema, and how many
    live workers serve each now (a job of an agent no worker serves waits).""",
    "list_approvals": """The approvals jobs are waiting for, oldest first: the job, what is to
    be approved (`name`, `request`) and the `position` and `args_hash` that identify it.""",
    "answer_approval": """Approve or reject (`decision`) what job `job_id` waits for, with an
    optional `comment`. `position` and `args_hash` (from list_approvals) make sure the
    decision is for exactly that request. Answers the signal sent and the job.""",
}

_READS = ToolAnnotations(read_only_hint=True)
_ANNOTATIONS: dict[str, ToolAnnotations | None] = {
    # Starting adds a job and deletes nothing; with an idempotency key, again is the same job.
    "start_job": ToolAnnotations(read_only_hint=False, destructive_hint=False),
    "get_job": _READS,
    "get_trace": _READS,
    "list_jobs": _READS,
    "list_agents": _READS,
    "list_approvals": _READS,
    "answer_approval": None,
}
