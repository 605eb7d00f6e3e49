"""The MCP server's tools in-process: the SDK's client on :func:`create_mcp_server`, each
call through :class:`aetheris.Client` into the API served by ``httpx.ASGITransport`` with a
key of a role and a tenant (the set-up of ``tests/api``). What a process adds (transports,
workers) is in ``test_mcp_serve.py``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from mcp.client import Client as McpClient

import aetheris
from aetheris.api import create_api
from aetheris.api.mcp_server import bearer, create_mcp_server
from aetheris.keys import create_key
from tests.api.conftest import build_app


@pytest.fixture
async def tools() -> AsyncIterator[Any]:
    """``tools(role, tenant)``: an MCP client acting with that key."""
    app = build_app()
    store = await app.open_store()
    wire = httpx.ASGITransport(create_api(app, deliver_webhooks=False))
    keys: dict[tuple[str, str], str] = {}
    for tenant in ("acme", "beta"):
        for role in ("operator", "viewer"):
            keys[(role, tenant)] = (await create_key(store, role, tenant))[1]

    def client(role: str, tenant: str = "acme") -> McpClient:
        def connect(key: str | None) -> aetheris.Client:
            assert key is None  # in memory, no request headers: the server's own key
            return aetheris.Client("http://aetheris", keys[(role, tenant)], transport=wire)

        return McpClient(create_mcp_server(connect))

    yield client
    await app.close()


async def call(client: McpClient, tool: str, **arguments: Any) -> tuple[bool, Any]:
    result = await client.call_tool(tool, arguments)
    text = "".join(getattr(c, "text", "") for c in result.content)
    return result.is_error, (text if result.is_error else json.loads(text))


async def test_the_tools_are_listed_with_their_arguments_and_read_only_hints(tools: Any) -> None:
    async with tools("viewer") as viewer:
        listed = {t.name: t for t in (await viewer.list_tools()).tools}
    assert set(listed) == {"start_job", "get_job", "get_trace", "list_jobs", "list_agents",
                           "list_approvals", "answer_approval"}  # fmt: skip
    start = listed["start_job"].input_schema
    assert start["required"] == ["agent"]
    assert set(start["properties"]) == {"agent", "input", "idempotency_key"}
    decision = listed["answer_approval"].input_schema["properties"]["decision"]
    assert decision["enum"] == ["approve", "reject"]
    for name in ("get_job", "get_trace", "list_jobs", "list_agents", "list_approvals"):
        hints = listed[name].annotations
        assert hints is not None and hints.read_only_hint is True, name
    for name in ("start_job", "answer_approval"):
        hints = listed[name].annotations
        assert hints is None or not hints.read_only_hint, name
    assert "ctx" not in json.dumps([t.input_schema for t in listed.values()])


async def test_a_key_sees_its_own_tenants_jobs_only(tools: Any) -> None:
    async with tools("operator", "acme") as acme:
        failed, job = await call(acme, "start_job", agent="quick", input={"n": 2})
        assert not failed, job
        assert job["tenant"] == "acme" and job["status"] == "pending"
        failed, jobs = await call(acme, "list_jobs")
        assert [j["id"] for j in jobs["jobs"]] == [job["id"]]
    async with tools("operator", "beta") as beta:
        failed, text = await call(beta, "get_job", job_id=job["id"])
        assert failed and text.endswith(f"not_found: job {job['id']!r} not found"), text
        failed, text = await call(beta, "get_trace", job_id=job["id"])
        assert failed and "not_found" in text, text
        assert (await call(beta, "list_jobs"))[1]["jobs"] == []
    async with tools("viewer", "acme") as viewer:
        failed, trace = await call(viewer, "get_trace", job_id=job["id"])
        assert not failed and [e["type"] for e in trace["events"]] == ["job_created"]
        failed, text = await call(viewer, "start_job", agent="quick")
        assert failed and "forbidden: a key with role 'viewer' may not start" in text, text


async def test_bad_arguments_name_the_problem(tools: Any) -> None:
    async with tools("operator") as operator:
        failed, text = await call(operator, "start_job", agent="quick", input={"n": "two"})
        assert failed and "invalid_input" in text and "n" in text, text
        failed, text = await call(operator, "list_jobs", limit=0)
        assert failed and "limit must be between 1 and 500, got 0" in text, text
        failed, text = await call(operator, "get_trace", job_id="x", limit=1000)
        assert failed and "limit must be between 1 and 200" in text, text
        failed, text = await call(operator, "answer_approval", job_id="x", decision="maybe")
        assert failed and "decision" in text, text


def test_the_key_of_a_request_is_its_bearer_token() -> None:
    assert bearer({"authorization": "Bearer ak_1"}) == "ak_1"
    assert bearer({"authorization": "bearer  ak_2 "}) == "ak_2"
    assert bearer({"authorization": "Basic abc"}) is None
    assert bearer({"authorization": "Bearer "}) is None
    assert bearer({}) is None and bearer(None) is None
