"""``aetheris tools list --json``: native tools and the tools of the MCP servers of the App and
of ``aetheris.toml``, with effect class, retry policy, rate limit, approval and JSON schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.mcp.mcp_app import SERVER
from tests.processes import ROOT


def test_tools_list_shows_the_registry(tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"
    (tmp_path / "aetheris.toml").write_text(
        'app = "tests.mcp.mcp_app:app"\n'
        "[mcp.servers.extra]\n"
        f"command = [{json.dumps(sys.executable)}, {json.dumps(str(SERVER))}]\n"
        f"env = {{ MCP_CALLS = {json.dumps(str(calls))} }}\n"
        'effects = { send = "idempotent" }\n'
        'approval = ["send"]\n'
        "rate_limits = { add = 5 }\n"
    )
    env = {
        **os.environ,
        "MCP_CALLS": str(calls),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "aetheris", "tools", "list", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    tools = {entry["name"]: entry for entry in json.loads(done.stdout)}
    notify = tools["notify"]
    assert (notify["source"], notify["effect"], notify["requires_approval"]) == (
        "native", "at_most_once", True,
    )  # fmt: skip
    assert notify["rate_limit"] == {"per_second": 3.0, "burst": 1.0}
    assert notify["input_schema"]["required"] == ["to"]
    assert notify["input_schema"]["properties"]["times"]["default"] == 1
    assert tools["tools.add"]["effect"] == "pure"
    assert tools["tools.put"]["effect"] == "idempotent"
    assert tools["tools.send"]["effect"] == "at_most_once"
    assert tools["limited.add"]["rate_limit"]["per_second"] == 2.0
    extra = tools["extra.send"]
    assert (extra["effect"], extra["effect_from"], extra["requires_approval"]) == (
        "idempotent", "config", True,
    )  # fmt: skip
    assert tools["extra.add"]["rate_limit"]["per_second"] == 5.0
    assert tools["extra.add"]["source"] == "mcp:extra"


def test_a_wrong_mcp_setting_is_named(tmp_path: Path) -> None:
    (tmp_path / "aetheris.toml").write_text(
        'app = "tests.mcp.mcp_app:app"\n[mcp.servers.bad]\nurl = "http://x/mcp"\nretries = 3\n'
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-m", "aetheris", "tools", "list"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "[mcp.servers.bad]: unknown setting 'retries'" in done.stderr
