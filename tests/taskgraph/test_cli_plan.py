"""``aetheris start --plan FILE`` end to end: a hand-written TaskGraph, a worker process, the
command waiting for the result; a plan that cannot run is refused before a job exists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.processes import ROOT, aetheris_cli, lines, start_worker, stop

HERE = Path(__file__).resolve().parent

PLAN_YAML = """\
goal: a diamond from a file
nodes:
  - {id: top, type: tool, tool: fetch, args: {node: top, order: o9}}
  - id: left
    type: tool
    tool: meet
    args: {node: left, party: [left, right], amount: {$ref: top.output.amount}}
  - id: right
    type: tool
    tool: meet
    depends_on: [top]
    args: {node: right, party: [left, right], amount: 2}
  - id: bottom
    type: tool
    tool: slow
    args: {node: bottom, left: {$ref: left.output}, right: {$ref: right.output}}
output: {$ref: bottom.output}
"""


def test_start_plan_runs_a_hand_written_taskgraph(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plans.db'}"
    world = tmp_path / "world"
    world.mkdir()
    (world / "release").touch()
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN_YAML)
    worker = start_worker("plan_app:app", url, world, cwd=HERE, env={"PLAN_WORLD": str(world)})
    try:
        done = aetheris_cli(url, "start", "--plan", str(plan), "--wait", "--timeout", "40")
    finally:
        stop(worker)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["result"] == 42
    assert result["outputs"]["top"] == {"order": "o9", "amount": 40}
    assert sorted(x.split()[1] for x in lines(world / "runs.log") if x.startswith("end")) == [
        "bottom",
        "left",
        "right",
        "top",
    ]
    shown = aetheris_cli(url, "jobs", "list", "--json")
    [job] = json.loads(shown.stdout)["jobs"] if "jobs" in shown.stdout else json.loads(shown.stdout)
    assert job["agent"] == "aetheris.plan"


def test_start_plan_refuses_a_plan_that_cannot_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plans.db'}"
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            {
                "nodes": [
                    {"id": "a", "type": "tool", "tool": "fetch", "depends_on": ["b"]},
                    {"id": "b", "type": "tool", "tool": "fetch", "depends_on": ["a"]},
                ]
            }
        )
    )
    done = aetheris_cli(url, "start", "--plan", str(plan))
    assert done.returncode == 2
    assert "invalid plan: the plan has a cycle: a -> b -> a" in done.stderr
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"nodes": [{"id": "a", "type": "tool", "tool": "wire"}]}))
    env = {**os.environ, "AETHERIS_DATABASE_URL": url, "PYTHONPATH": f"{HERE}:{ROOT / 'src'}"}
    command = [sys.executable, "-m", "aetheris", "start", "--plan", str(unknown)]
    checked = subprocess.run(
        [*command, "--app", "plan_app:app"], env=env, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 2, checked.stderr
    assert "node 'a': unknown tool 'wire' (tools: fetch, meet, slow)" in checked.stderr
    both = aetheris_cli(url, "start", "--plan", str(plan), "--input", '{"x": 1}')
    assert both.returncode == 2
    assert "--plan and --input cannot be given together" in both.stderr
