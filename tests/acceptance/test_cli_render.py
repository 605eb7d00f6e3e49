"""What ``aetheris`` prints for people: stored data as text, tables that fit, colours that behave.

The jobs are run in this process (a worker on a SQLite file); the CLI is then run as
``python -m aetheris`` on the checkout this file lives in, as a person would run it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aetheris import App, Context
from aetheris.testing import running_worker
from aetheris.tools import CompensationRequest

SRC = Path(__file__).resolve().parents[2] / "src"
MARKUP = "[/x] and [bold red]X[/]"
ESCAPE = "\x1b[31m"  # a colour change hidden in an error message


# -- the jobs ---------------------------------------------------------------------------------


def _app(url: str) -> App:
    app = App(url, lease_ttl=2, poll_interval=0.02)

    @app.tool(name="notify[red]X[/]", effect="at_most_once")
    async def notify(text: str) -> str:
        return f"noted {text}"

    async def unbook(request: CompensationRequest) -> None:
        return None

    @app.tool(effect="idempotent", compensate=unbook)
    async def book(room: str) -> str:
        return f"booked {room}"

    @app.agent(name="refuse[/x]")
    async def refuse(ctx: Context, note: str) -> None:
        await notify(note)
        raise ValueError(f"refused {note}{ESCAPE}")

    @app.agent
    async def wait_for_go_signal(ctx: Context, who: str) -> dict[str, Any]:
        now, token, luck = ctx.now(), ctx.uuid(), ctx.random()
        await notify(who)
        go = await ctx.wait_for_signal("go")
        return {"now": now.isoformat(), "token": str(token), "luck": luck, "go": go}

    @app.agent
    async def book_then_fail(ctx: Context, room: str) -> None:
        await book(room)
        raise RuntimeError("no payment")

    @app.agent
    async def greet(ctx: Context, name: str) -> str:
        return f"hello {name}"

    return app


@dataclass(frozen=True)
class World:
    url: str
    jobs: dict[str, str]  # the status each job is in, by id
    failed: str  # the job whose input and error hold markup
    parked: str  # the job waiting for signal "go"


async def _run_jobs(url: str) -> World:
    async with _app(url) as app:
        failed = (await app.start("refuse[/x]", {"note": MARKUP})).job_id
        parked = (await app.start("wait_for_go_signal", {"who": MARKUP})).job_id
        compensated = (await app.start("book_then_fail", {"room": "r1"})).job_id
        succeeded = (await app.start("greet", {"name": "ada"})).job_id
        async with running_worker(app, concurrency=4):
            deadline = time.monotonic() + 30
            while True:
                jobs = {j.id: j.status.value for j in await app.list_jobs()}
                if jobs[parked] == "parked" and all(
                    jobs[j] != "pending" and jobs[j] != "running"
                    for j in (failed, compensated, succeeded)
                ):
                    break
                assert time.monotonic() < deadline, jobs
                await asyncio.sleep(0.05)
        pending = (await app.start("greet", {"name": "bob"})).job_id
        cancelled = (await app.start("greet", {"name": "eve"})).job_id
        await app.cancel(cancelled)
        jobs = {j.id: j.status.value for j in await app.list_jobs()}
    assert jobs == {
        failed: "failed",
        parked: "parked",
        compensated: "compensated",
        succeeded: "succeeded",
        pending: "pending",
        cancelled: "cancelled",
    }
    return World(url, jobs, failed, parked)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    url = f"sqlite:///{tmp_path_factory.mktemp('render') / 'aetheris.db'}"
    return asyncio.run(_run_jobs(url))


# -- running the CLI --------------------------------------------------------------------------


def _env(world: World, **extra: str) -> dict[str, str]:
    """This checkout's ``aetheris`` on the world's database; nothing that sets width or colour."""
    unset = ("PYTHONPATH", "COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TERM", "COLORTERM")
    env = {k: v for k, v in os.environ.items() if k not in unset and not k.startswith("TTY_")}
    env.update(PYTHONPATH=str(SRC), AETHERIS_DATABASE_URL=world.url, TERM="xterm-256color")
    env.update(extra)
    return env


def piped(world: World, *args: str, **env: str) -> str:
    """Run ``aetheris ARGS`` with its output to a pipe; return that output."""
    done = subprocess.run(
        [sys.executable, "-m", "aetheris", *args],
        env=_env(world, **env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"aetheris {' '.join(args)}:\n{done.stderr}{done.stdout}"
    assert done.stderr == ""
    return done.stdout


# -- stored data is text ----------------------------------------------------------------------


def test_markup_in_stored_data_is_printed_literally(world: World) -> None:
    outputs = {
        "trace": piped(world, "trace", world.failed),
        "parked-trace": piped(world, "trace", world.parked),
        "jobs list": piped(world, "jobs", "list"),
        "jobs show": piped(world, "jobs", "show", world.failed),
        "effects list": piped(world, "effects", "list"),
    }
    for name, out in outputs.items():
        # A colour change inside an error message is shown, not obeyed.
        assert "\x1b" not in out, name
    assert f'input {{"note": "{MARKUP}"}}' in outputs["trace"]
    assert f"ValueError: refused {MARKUP}\\x1b[31m" in outputs["trace"]
    assert f'input {{"who": "{MARKUP}"}}' in outputs["parked-trace"]
    assert "notify[red]X[/]#1" in outputs["parked-trace"]
    assert "refuse[/x]" in outputs["jobs list"]
    assert f'{{"note": "{MARKUP}"}}' in outputs["jobs show"]
    assert f"ValueError: refused {MARKUP}\\x1b[31m" in outputs["jobs show"]
    assert "notify[red]X[/]" in outputs["effects list"]
