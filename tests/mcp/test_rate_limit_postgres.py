"""A tool's rate limit holds across worker processes on PostgreSQL: two workers, each with
its own MCP server process, call ``limited.add`` (2 calls a second) no faster together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aetheris import JobStatus
from tests.conftest import require_postgres
from tests.integration.helpers import wait_for
from tests.mcp.mcp_app import make_app
from tests.processes import start_worker, stop

pytestmark = pytest.mark.chaos


async def test_two_workers_share_one_rate_limit(pg_url: str, tmp_path: Path) -> None:
    require_postgres()
    calls = tmp_path / "calls.jsonl"
    (tmp_path / "aetheris.toml").write_text("[worker]\nconcurrency = 2\n")
    app = make_app(pg_url, str(calls))
    env = {"MCP_CALLS": str(calls)}
    handles = [await app.start("limited", {"n": n}) for n in range(8)]
    workers = [
        start_worker("tests.mcp.mcp_app:app", pg_url, tmp_path, cwd=tmp_path, env=env)
        for _ in range(2)
    ]
    try:
        for handle in handles:
            job = await wait_for(app, handle.job_id, JobStatus.SUCCEEDED, timeout=60)
            assert job.result == {"result": job.input["n"]}
    finally:
        for worker in workers:
            stop(worker)
        await app.close()
    seen = [json.loads(line) for line in calls.read_text().splitlines()]
    assert len(seen) == 8
    assert len({call["pid"] for call in seen}) == 2  # both workers called, each its server
    times = sorted(call["at"] for call in seen)
    # 2 a second, one at a time: 8 calls span at least 3.5 s, any 3 in a row at least 1 s.
    assert times[-1] - times[0] >= 3.5 - 0.15, times
    assert all(b - a >= 1.0 - 0.15 for a, b in zip(times, times[2:], strict=False)), times
