"""What ``aetheris`` prints for people: stored data as text, tables that fit, colours that behave.

The jobs are run in this process (a worker on a SQLite file); the CLI is then run as
``python -m aetheris`` on the checkout this file lives in, with its output going to a pipe or
to a real pseudo-terminal of a given size, as a person would see it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import itertools
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
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
ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")
JOB_KEYS = {
    "id", "agent", "status", "park_reason", "park_detail", "input", "result", "error",
    "idempotency_key", "queue", "priority", "wake_on", "wake_at", "parent_id", "control",
    "control_by", "deadline", "lease_epoch", "lease_owner", "lease_expires_at", "attempts",
    "events", "created_at", "updated_at", "code_version",
}  # fmt: skip
EVENT_KEYS = {"seq", "type", "position", "at", "data", "hash", "prev_hash"}
EFFECT_KEYS = {
    "job_id", "position", "tool", "effect", "state", "idempotency_key", "args_hash", "attempt",
    "result", "error", "created_at", "updated_at",
}  # fmt: skip


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


def in_terminal(world: World, *args: str, columns: int, **env: str) -> str:
    """Run ``aetheris ARGS`` in a pseudo-terminal ``columns`` wide; return what it printed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aetheris", *args],
            env=_env(world, **env),
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=slave,
        )
    finally:
        os.close(slave)
    chunks = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the terminal's other end is closed, all is read
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        else:
            pytest.fail(f"aetheris {' '.join(args)} did not finish")
        code = proc.wait(timeout=10)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = b"".join(chunks).decode().replace("\r\n", "\n")
    assert code == 0, f"aetheris {' '.join(args)}:\n{out}"
    return out


def plain(out: str) -> list[str]:
    """The lines of ``out`` without escape sequences (colours) and trailing spaces."""
    return [line.rstrip() for line in ANSI.sub("", out).splitlines()]


def line_with(lines: list[str], *words: str) -> str:
    """The line that holds every one of ``words`` whole (as whitespace-separated words)."""
    found = [line for line in lines if set(words) <= set(line.split())]
    assert found, f"no line holds {words} whole:\n" + "\n".join(lines)
    return found[0]


def record(lines: list[str], first: str) -> str:
    """The line that starts with ``first`` and the lines under it that go on with its row."""
    start = next(i for i, line in enumerate(lines) if line.startswith(first))
    rest = itertools.takewhile(lambda line: line.startswith(" "), lines[start + 1 :])
    return "\n".join([lines[start], *rest])


def header(lines: list[str]) -> list[str]:
    """The words of a table's header: the lines above its rule, under the title."""
    rule = next(i for i, line in enumerate(lines) if line.startswith("─"))
    return " ".join(lines[1:rule]).replace("/", " ").split()


def trace_json(world: World, job_id: str) -> dict[str, Any]:
    trace: dict[str, Any] = json.loads(piped(world, "trace", job_id, "--json"))
    return trace


# -- stored data is text ----------------------------------------------------------------------


def test_markup_in_stored_data_is_printed_literally(world: World) -> None:
    outputs = {
        "trace": piped(world, "trace", world.failed),
        "trace-wide": piped(world, "trace", world.failed, "--wide"),
        "trace-narrow": piped(world, "trace", world.failed, COLUMNS="80"),
        "parked-trace": piped(world, "trace", world.parked),
        "jobs list": piped(world, "jobs", "list"),
        "jobs list-wide": piped(world, "jobs", "list", "--wide"),
        "jobs show": piped(world, "jobs", "show", world.failed),
        "effects list": piped(world, "effects", "list"),
        "effects list-wide": piped(world, "effects", "list", "--wide"),
    }
    for name, out in outputs.items():
        assert "Traceback" not in out or name == "jobs show", name
        if name.startswith("effects list"):
            assert "notify[red]X[/]" in out, f"{name}:\n{out}"
        else:
            assert "[/x]" in out, f"{name}:\n{out}"
        if not name.startswith(("trace-narrow", "effects list")):
            assert "[bold red]X[/]" in out, f"{name}:\n{out}"
        # A colour change inside an error message is shown, not obeyed.
        assert "\x1b" not in out, name
    assert f"refused {MARKUP}\\x1b[31m" in outputs["trace"]
    assert f"ValueError: refused {MARKUP}\\x1b[31m" in outputs["jobs list"]
    assert "refuse[/x]" in outputs["jobs list"]
    assert f'{{"note": "{MARKUP}"}}' in outputs["jobs show"]


def test_jobs_show_prints_the_failure_traceback_as_text(world: World) -> None:
    shown = plain(piped(world, "jobs", "show", world.failed))
    error = line_with(shown, "error", "ValueError:")
    assert error.endswith(f"ValueError: refused {MARKUP}\\x1b[31m")
    start = shown.index("traceback:")
    traceback = shown[start + 1 :]
    assert traceback[0] == "Traceback (most recent call last):"
    assert any('raise ValueError(f"refused {note}{ESCAPE}")' in line for line in traceback)
    assert traceback[-1] == f"ValueError: refused {MARKUP}\\x1b[31m"

    # A job that did not fail has no traceback to show.
    assert "traceback" not in piped(world, "jobs", "show", world.parked)


# -- tables that fit --------------------------------------------------------------------------


@pytest.mark.parametrize("columns", [80, 200])
def test_jobs_list_in_a_terminal_keeps_every_id_and_status_whole(
    world: World, columns: int
) -> None:
    lines = plain(in_terminal(world, "jobs", "list", columns=columns))
    assert lines[0] == f"{len(world.jobs)} job(s)"
    for job_id, status in world.jobs.items():
        line = line_with(lines, job_id, status)
        assert line.startswith(job_id)
    assert max(len(line) for line in lines) <= columns
    # The agents' names, the park reason and the errors are there too, not squeezed away.
    parked = record(lines, world.parked).split()
    assert "wait_for_go_signal" in parked
    assert "signal" in parked
    failed = record(lines, world.failed)
    assert "refuse[/x]" in failed.split()
    assert "ValueError: refused [/x] and" in failed
    if columns == 200:
        assert header(lines) == [
            "id", "agent", "status", "reason", "error", "runs", "events", "created", "(UTC)",
        ]  # fmt: skip
        assert f"ValueError: refused {MARKUP}" in line_with(lines, world.failed)
    else:
        assert {"id", "agent", "status", "reason", "error"} <= set(header(lines))


@pytest.mark.parametrize("columns", [80, 200])
def test_trace_in_a_terminal_keeps_seq_position_kind_and_name(world: World, columns: int) -> None:
    compensated = next(j for j, status in world.jobs.items() if status == "compensated")
    for job_id in (world.failed, world.parked, compensated):  # the last has long names
        lines = plain(in_terminal(world, "trace", job_id, columns=columns))
        status = world.jobs[job_id]
        assert line_with(lines, "job", job_id, status) == lines[0]
        assert max(len(line) for line in lines) <= columns
        events = trace_json(world, job_id)["events"]
        for event in events:
            words = [str(event["seq"]), event["type"]]
            if event["position"] is not None:
                words.append(str(event["position"]))
                words.append(event["data"]["kind"])
            row = line_with(lines, *words)
            if event["type"] in ("op", "intent"):
                name = f"{event['data']['name']}#{event['data']['ordinal']}"
                assert name in row.split(), row


def test_effects_list_in_a_terminal_keeps_job_ids_whole(world: World) -> None:
    effects = json.loads(piped(world, "effects", "list", "--json"))
    assert {e["tool"] for e in effects} == {"notify[red]X[/]", "book", "compensate:book"}
    for columns in (80, 200):
        lines = plain(in_terminal(world, "effects", "list", columns=columns))
        assert max(len(line) for line in lines) <= columns
        for effect in effects:
            line = line_with(lines, effect["job_id"], str(effect["position"]), effect["state"])
            assert line.startswith(effect["job_id"])
            if columns == 200:
                assert effect["idempotency_key"] in line.split()


def test_wide_shows_every_column_in_full_at_any_width(world: World) -> None:
    jobs = plain(in_terminal(world, "jobs", "list", "--wide", columns=80))
    assert header(jobs)[3:] == ["reason", "error", "runs", "events", "created", "(UTC)"]
    assert f"ValueError: refused {MARKUP}\\x1b[31m" in line_with(jobs, world.failed)

    trace = plain(in_terminal(world, "trace", world.parked, "--wide", columns=80))
    assert header(trace) == [
        "seq", "pos", "event", "kind", "name", "outcome", "duration", "detail",
    ]  # fmt: skip
    intent = next(e for e in trace_json(world, world.parked)["events"] if e["type"] == "intent")
    assert intent["data"]["idempotency_key"] in line_with(trace, str(intent["seq"]), "intent")

    effects = plain(in_terminal(world, "effects", "list", "--wide", columns=80))
    assert header(effects) == [
        "job", "pos", "tool", "effect", "state", "attempt", "idempotency", "key",
    ]  # fmt: skip
    for effect in json.loads(piped(world, "effects", "list", "--json")):
        assert effect["idempotency_key"] in line_with(effects, effect["job_id"], effect["tool"])


@pytest.mark.parametrize("columns", [None, "80"])
def test_piped_tables_keep_ids_whole(world: World, columns: str | None) -> None:
    env = {"COLUMNS": columns} if columns else {}
    width = int(columns or 160)  # a pipe is as wide as COLUMNS says, else 160 columns
    lines = plain(piped(world, "jobs", "list", **env))
    for job_id, status in world.jobs.items():
        assert line_with(lines, job_id, status).startswith(job_id)
    assert max(len(line) for line in lines) <= width
    lines = plain(piped(world, "trace", world.parked, **env))
    assert line_with(lines, "job", world.parked) == lines[0]
    assert max(len(line) for line in lines) <= width


# -- colours ----------------------------------------------------------------------------------


def test_colours_only_in_a_terminal_and_never_under_no_color(world: World) -> None:
    coloured = in_terminal(world, "jobs", "list", columns=120)
    assert "\x1b[" in coloured
    assert "\x1b[" in in_terminal(world, "trace", world.failed, columns=120)

    for args in (("jobs", "list"), ("trace", world.failed), ("effects", "list")):
        assert "\x1b" not in in_terminal(world, *args, columns=120, NO_COLOR="1")
        assert "\x1b" not in piped(world, *args)
    # Without the colours, what is printed is the same.
    assert plain(coloured) == plain(in_terminal(world, "jobs", "list", columns=120, NO_COLOR="1"))


# -- what a trace says ------------------------------------------------------------------------


def test_trace_shows_now_as_a_time_and_names_what_a_wait_waits_for(world: World) -> None:
    events = trace_json(world, world.parked)["events"]
    lines = plain(piped(world, "trace", world.parked))
    (now,) = (e for e in events if e["type"] == "op" and e["data"]["kind"] == "now")
    at = dt.datetime.fromtimestamp(now["data"]["result"], dt.UTC)
    row = line_with(lines, str(now["seq"]), "now", "now#1")
    assert at.isoformat(timespec="milliseconds").replace("+00:00", "Z") in row.split()
    assert str(now["data"]["result"]) not in row

    (token,) = (e for e in events if e["type"] == "op" and e["data"]["kind"] == "uuid")
    assert token["data"]["result"] in line_with(lines, str(token["seq"]), "uuid", "uuid#1").split()

    (wait,) = (e for e in events if e["type"] == "wait")
    assert (wait["data"]["kind"], wait["data"]["name"]) == ("signal", "go")
    row = line_with(lines, str(wait["seq"]), "wait", "signal", "go#1")
    assert "no deadline" in row
    parked = record(lines, f"{wait['seq'] + 1:>3}")
    assert line_with([parked], "job_parked", "signal")
    assert f"aetheris signal {world.parked} go" in " ".join(parked.split())


# -- the JSON schema does not move ------------------------------------------------------------


def test_json_output_keeps_its_schema(world: World) -> None:
    jobs = json.loads(piped(world, "jobs", "list", "--json"))
    assert {j["id"] for j in jobs} == set(world.jobs)
    assert all(set(j) == JOB_KEYS for j in jobs)
    assert json.loads(piped(world, "jobs", "list", "--json", "--wide")) == jobs

    trace = trace_json(world, world.failed)
    assert set(trace) == {"job", "events"}
    assert set(trace["job"]) == JOB_KEYS
    assert all(set(e) == EVENT_KEYS for e in trace["events"])
    assert trace["job"]["error"]["type"] == "ValueError"
    assert trace["job"]["input"] == {"note": MARKUP}

    effects = json.loads(piped(world, "effects", "list", "--json"))
    assert all(set(e) == EFFECT_KEYS for e in effects)
