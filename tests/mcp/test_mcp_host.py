"""The MCP host against a real MCP server process (``tool_server.py``, the ``mcp`` SDK):
tools listed with effect classes from their annotations, journaled calls with the idempotency
key in ``_meta``, a dead server started again, and a worker killed mid-call."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from aetheris import App, JobStatus, ParkReason
from aetheris.errors import ConfigurationError
from aetheris.integrations.mcp import IDEMPOTENCY_KEY_META, MCPServer, mcp_host
from aetheris.store.port import EffectClass, EffectState
from tests.integration.helpers import run_job, wait_for
from tests.mcp.mcp_app import make_app
from tests.processes import ROOT, start_worker, stop


def calls(path: Path) -> list[dict[str, Any]]:
    """What reached the MCP server, in order."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def calls_path(tmp_path: Path) -> Path:
    return tmp_path / "calls.jsonl"


@pytest.fixture
async def app(tmp_path: Path, calls_path: Path) -> Any:
    app = make_app(f"sqlite:///{tmp_path / 'db.sqlite'}", str(calls_path))
    yield app
    await mcp_host(app).close()
    await app.close()


async def test_tools_are_listed_with_effects_from_annotations_or_config(app: App) -> None:
    tools = {t.name: t for t in await mcp_host(app).servers["tools"].tools()}
    assert tools["tools.add"].effect is EffectClass.PURE  # readOnlyHint
    assert tools["tools.put"].effect is EffectClass.IDEMPOTENT  # idempotentHint
    assert tools["tools.send"].effect is EffectClass.AT_MOST_ONCE  # no hint
    assert {t.effect_from for t in tools.values()} == {"annotations"}
    assert tools["tools.add"].input_schema is not None
    assert tools["tools.add"].input_schema["required"] == ["a", "b"]
    configured = MCPServer("cfg", command=["x"], effects={"send": "idempotent"}, approval=["send"])
    listing = await (await mcp_host(app).servers["tools"]._client()).list_tools()
    send = next(t for t in listing.tools if t.name == "send")
    described = configured._describe(send)
    assert (described.effect, described.effect_from) == (EffectClass.IDEMPOTENT, "config")
    assert described.requires_approval


async def test_a_round_trip_is_journaled_with_the_key_in_meta(app: App, calls_path: Path) -> None:
    job = await run_job(app, "roundtrip")
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result["total"] == {"result": 5}
    assert job.result["stored"] == {"result": "stored k"}
    assert job.result["sent"]["sent_to"] == "ana"
    seen = calls(calls_path)
    assert [c["tool"] for c in seen] == ["add", "put", "send"]
    effects = {e.tool: e for e in await (await app.open_store()).effects(job_id=job.id)}
    assert set(effects) == {"tools.put", "tools.send"}  # pure calls have no ledger row
    assert effects["tools.send"].state is EffectState.COMMITTED
    for call in seen:
        assert call["meta"][IDEMPOTENCY_KEY_META].startswith(f"aeth-{job.id}-")
    assert seen[2]["meta"][IDEMPOTENCY_KEY_META] == effects["tools.send"].idempotency_key
    # Replayed from the journal: nothing reaches the server again.
    again = await app.get_job(job.id)
    assert again.status is JobStatus.SUCCEEDED and len(calls(calls_path)) == 3


async def test_a_dead_server_is_started_again(app: App, calls_path: Path) -> None:
    job = await run_job(app, "restarted")
    assert job.status is JobStatus.SUCCEEDED, job.error
    first, second, sender = job.result
    assert first != second and sender == second
    assert [c["tool"] for c in calls(calls_path)] == ["pid", "pid", "send"]


async def test_an_error_result_is_the_tools_failure(app: App) -> None:
    job = await run_job(app, "failing")
    assert job.status is JobStatus.FAILED
    assert job.error is not None and "no such account" in json.dumps(job.error)


async def test_unknown_servers_and_tools_are_named(app: App) -> None:
    with pytest.raises(ConfigurationError, match="has no tool 'nope'"):
        await mcp_host(app).servers["tools"].tool("nope")
    with pytest.raises(ConfigurationError, match="command or a url"):
        MCPServer("x")
    with pytest.raises(ConfigurationError, match="effect must be one of"):
        MCPServer("x", url="http://h/mcp", effects={"t": "twice"})


@pytest.mark.chaos
async def test_kill_9_mid_call_leaves_an_at_most_once_call_in_doubt(
    tmp_path: Path, calls_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    app = make_app(url, str(calls_path), lease_ttl=1.0)
    env = {"MCP_CALLS": str(calls_path)}
    root = ROOT
    handle = await app.start("slow", {"seconds": 60})
    worker = start_worker("tests.mcp.mcp_app:app", url, tmp_path, cwd=root, env=env)
    try:
        deadline = time.monotonic() + 30
        while not any(c["tool"] == "slow_send" for c in calls(calls_path)):
            assert time.monotonic() < deadline, "the call never reached the server"
            await asyncio.sleep(0.05)
        worker.kill()  # SIGKILL, mid-call
        worker.wait(10)
        worker = start_worker("tests.mcp.mcp_app:app", url, tmp_path, cwd=root, env=env)
        job = await wait_for(app, handle.job_id, JobStatus.PARKED, timeout=30)
        assert job.park_reason is ParkReason.EFFECT_IN_DOUBT
        assert job.park_detail is not None and job.park_detail["tool"] == "tools.slow_send"
        await asyncio.sleep(1.0)  # the second worker had every chance to call it again
        assert [c["tool"] for c in calls(calls_path)] == ["slow_send"]
        (effect,) = await (await app.open_store()).effects(job_id=handle.job_id)
        assert effect.state is EffectState.IN_DOUBT
    finally:
        stop(worker)
        await app.close()
