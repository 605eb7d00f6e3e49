"""``aetheris worker --log-format json --metrics-port 0`` as a process: its lines about a job
carry the job id, position and fencing token, and its metrics endpoint answers over a socket
(with the token it was given)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from aetheris import App, JobStatus

ROOT = Path(__file__).resolve().parents[2]
APP_SOURCE = """
import logging
from aetheris import App, Context

app = App()
log = logging.getLogger("obs_app")

@app.tool(effect="at_most_once")
async def ship(order: str) -> str:
    log.info("shipping %s", order)
    return "shipped " + order

@app.agent
async def deliver(ctx: Context, order: str) -> str:
    return await ctx.step("pack", lambda: "packed") + ", " + await ship(order)
"""


def read_lines(path: Path) -> list[dict[str, Any]]:
    found = []
    for line in path.read_text("utf-8").splitlines():
        assert line.startswith("{"), f"not a JSON line: {line!r}"
        found.append(json.loads(line))
    return found


def start_worker(tmp_path: Path, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    args = ["worker", "--app", "obs_app:app", "--log-format", "json", "--metrics-port", "0"]
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "aetheris", *args],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def until_line(path: Path, pattern: str, proc: subprocess.Popen[bytes]) -> re.Match[str]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(pattern, path.read_text("utf-8") if path.exists() else "")
        if found:
            return found
        assert proc.poll() is None, path.read_text("utf-8")
        time.sleep(0.05)
    raise AssertionError(f"no {pattern!r} in {path.read_text('utf-8')}")


async def test_a_worker_logs_json_with_the_jobs_fields_and_serves_metrics(tmp_path: Path) -> None:
    (tmp_path / "obs_app.py").write_text(APP_SOURCE, "utf-8")
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    env = {
        **{k: v for k, v in os.environ.items() if k != "AETHERIS_CRASH_AT"},
        "AETHERIS_DATABASE_URL": url,
        "AETHERIS_METRICS_TOKEN": "tok",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "src")]),
        "PYTHONUNBUFFERED": "1",
    }
    log_path = tmp_path / "worker.log"
    proc = start_worker(tmp_path, env, log_path)
    try:
        metrics_url = until_line(log_path, r"metrics at (http://\S+/metrics)", proc).group(1)
        async with App(url) as app:
            job = await (await app.start("deliver", {"order": "o-7"})).job()
            done = await app.handle(job.id).result(timeout=30)
        assert done == "packed, shipped o-7"
        until_line(log_path, rf"job {job.id} succeeded", proc)
        async with httpx.AsyncClient() as client:
            refused = await client.get(metrics_url)
            scraped = await client.get(metrics_url, headers={"Authorization": "Bearer tok"})
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode == 0, log_path.read_text("utf-8")
    lines = read_lines(log_path)
    about = [r for r in lines if r.get("job_id") == job.id]
    shipping = [r for r in about if r["logger"] == "obs_app"]
    assert shipping and shipping[0]["position"] == 1 and shipping[0]["fencing_token"] == 1
    ends = [r for r in about if r["logger"] == "aetheris.worker.jobs"]
    assert len(ends) == 2 and all(r["fencing_token"] == 1 for r in ends)
    assert refused.status_code == 401
    assert scraped.status_code == 200
    text = scraped.text
    tools = 'aetheris_operation_duration_seconds_count{kind="tool",outcome="side_effect_committed"}'
    assert f"{tools} 1.0" in text
    assert 'aetheris_jobs{tenant="default",status="succeeded"} 1.0' in text
    assert job.id not in text
    assert JobStatus.SUCCEEDED.value in text
