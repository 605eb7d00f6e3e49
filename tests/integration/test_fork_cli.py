"""``aetheris fork`` and ``aetheris diff`` on a SQLite database."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from aetheris import App, Job
from aetheris.cli import main
from aetheris.journal import EventType, verify_chain
from aetheris.testing import running_worker
from tests.integration.helpers import World, run_job, wait_for
from tests.integration.test_fork import ScriptedModel, planner_app


def _cli(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--database-url", url, *args])


def _app(url: str) -> tuple[App, ScriptedModel, World]:
    model, world = ScriptedModel(), World()
    return planner_app(url, model, world), model, world


def _origin(url: str) -> Job:
    async def go() -> Job:
        app, _, _ = _app(url)
        try:
            return await run_job(app, "buy", {"item": "kite"})
        finally:
            await app.close()

    return asyncio.run(go())


def _finish(url: str, job_id: str) -> Job:
    async def go() -> Job:
        app, _, _ = _app(url)
        try:
            async with running_worker(app, poll_interval=0.01):
                return await wait_for(app, job_id)
        finally:
            await app.close()

    return asyncio.run(go())


def _events(url: str, job_id: str) -> list[Any]:
    async def go() -> list[Any]:
        app = App(url)
        try:
            return await (await app.open_store()).events(job_id)
        finally:
            await app.close()

    return asyncio.run(go())


def test_fork_then_diff_against_the_origin(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    origin = _origin(url)
    same = _fork_and_run(url, origin.id, "--at", "4")
    done = _cli(url, "diff", origin.id, same)
    assert done.exit_code == 0, done.output
    assert "are the same run" in done.output

    edited = _fork_and_run(url, origin.id, "--at", "0", "--output", "7")
    done = _cli(url, "diff", origin.id, edited, "--json")
    assert done.exit_code == 1, done.output
    doc = json.loads(done.output)
    assert doc["same"] is False
    first = doc["first_divergence"]
    # The edited quote changed the model's prompt: the model call is the first other operation.
    assert first["position"] == 1 and first["a"]["name"] == "scripted"
    assert first["a"]["args_hash"] != first["b"]["args_hash"]
    [changed] = [r for r in doc["rows"] if r["differs"] == "output"]
    assert changed["position"] == 0
    assert changed["a"]["output"] == {"result": 40} and changed["b"]["output"] == {"result": 7}
    assert doc["end"]["same"] is False
    table = _cli(url, "diff", origin.id, edited)
    assert table.exit_code == 1
    assert "first divergence at position 1" in table.output
    assert "other output at position(s) [0]" in table.output

    fork_events = _events(url, edited)
    assert fork_events[0].data["forked_from"] == {"job": origin.id, "at": 0, "edited": 0}
    assert verify_chain(edited, fork_events).ok
    forked = [e.data["fork"] for e in _events(url, origin.id) if e.type is EventType.JOB_FORKED]
    assert forked == [same, edited]
    verified = _cli(url, "verify", edited)
    assert verified.exit_code == 0, verified.output
    assert "forked from" in _cli(url, "trace", edited).output
    assert "forked to" in _cli(url, "trace", origin.id).output


def _fork_and_run(url: str, origin: str, *args: str) -> str:
    done = _cli(url, "fork", origin, *args, "--json")
    assert done.exit_code == 0, done.output
    fork_id = json.loads(done.output)["id"]
    assert _finish(url, fork_id).status.terminal
    return str(fork_id)


def test_fork_and_diff_refuse_bad_input(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    origin = _origin(url)
    out_of_range = _cli(url, "fork", origin.id, "--at", "9")
    assert out_of_range.exit_code != 0
    assert "out of range" in out_of_range.output
    not_json = _cli(url, "fork", origin.id, "--at", "0", "--output", "{nope")
    assert not_json.exit_code != 0 and "not valid JSON" in not_json.output
    unknown = _cli(url, "fork", "no-such-job", "--at", "0")
    assert unknown.exit_code != 0 and "no-such-job" in unknown.output
    missing = _cli(url, "diff", origin.id, "no-such-job")
    assert missing.exit_code == 1 and "no-such-job" in missing.output
    forks = [e for e in _events(url, origin.id) if e.type is EventType.JOB_FORKED]
    assert forks == [], "nothing half-written by a refused fork"
