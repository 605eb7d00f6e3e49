"""``aetheris chat`` with the chat agent of a new project, while its worker is killed.

The model is a scripted server in this process; its second call hangs, and the worker is
killed with SIGKILL while it waits. Another worker takes the job over: the conversation goes
on from where its journal ends, each message answered once, in order, none lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aetheris import App
from aetheris.chat import Turn, turns
from aetheris.llm.stub import StubServer
from tests.acceptance.test_cli import AETHERIS
from tests.acceptance.test_project import Lines, make_project, project_env
from tests.acceptance.test_server import free_port

SCRIPT = {
    "replies": [
        {"match": word, "content": f"reply {word}"} for word in ("alpha", "bravo", "charlie")
    ],
    # The first call answers at once, the second hangs (the worker dies meanwhile).
    "faults": [{"delay": 0, "times": 1}, {"delay": 60, "times": 1}],
}


@pytest.fixture
def stub() -> Iterator[StubServer]:
    with StubServer(SCRIPT) as server:
        yield server


class Processes:
    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(self, folder: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [AETHERIS, *args],
            cwd=folder,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.started.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    try:
        yield started
    finally:
        started.close()


def wait_until(condition: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def say(chat: subprocess.Popen[str], text: str) -> None:
    assert chat.stdin is not None
    chat.stdin.write(text + "\n")
    chat.stdin.flush()


def conversation(folder: Path, job_id: str) -> list[Turn]:
    async def read() -> list[Turn]:
        app = App(f"sqlite:///{folder / '.aetheris' / 'aetheris.db'}")
        try:
            return turns(await (await app.open_store()).events(job_id))
        finally:
            await app.close()

    return asyncio.run(read())


@pytest.mark.chaos
def test_a_conversation_survives_its_worker_killed_mid_turn(
    tmp_path: Path, stub: StubServer, processes: Processes
) -> None:
    folder = make_project(tmp_path)
    env = project_env(AETHERIS_LLM_URL=stub.url, AETHERIS_LLM_MODEL="local")
    first = processes.start(folder, env, "worker", "--lease-ttl", "5")
    chat = processes.start(folder, env, "chat", "chat")
    out = Lines(chat.stdout)  # type: ignore[arg-type]
    job_id = out.wait_for(r"^conversation \S+ with chat").split()[1]

    say(chat, "alpha")
    out.wait_for(r"^chat> reply alpha$")
    say(chat, "bravo")
    wait_until(lambda: stub.calls == 2, "the second model call never came")
    os.kill(first.pid, signal.SIGKILL)  # while the model is thinking
    first.wait(timeout=10)
    processes.start(folder, env, "worker", "--lease-ttl", "5")
    out.wait_for(r"^chat> reply bravo$", timeout=60)
    say(chat, "charlie")
    out.wait_for(r"^chat> reply charlie$")
    say(chat, "/end")
    out.wait_for(rf"^conversation {job_id} ended$")
    assert chat.wait(timeout=10) == 0

    replies = [line for line in out.seen if line.startswith("chat> ")]
    assert replies == ["chat> reply alpha", "chat> reply bravo", "chat> reply charlie"]
    said = [(t.speaker, t.text) for t in conversation(folder, job_id)]
    assert said == [
        ("user", "alpha"),
        ("agent", "reply alpha"),
        ("user", "bravo"),
        ("agent", "reply bravo"),
        ("user", "charlie"),
        ("agent", "reply charlie"),
        ("end", ""),
    ]
    # The call in flight when the worker died is the only one made twice.
    assert stub.calls == 4
    asked = [r["messages"][-1]["content"] for r in stub.requests]
    assert asked == ["alpha", "bravo", "bravo", "charlie"]


def through_a_server(folder: Path, env: dict[str, str], processes: Processes) -> dict[str, str]:
    """The environment of a chat that goes through a real server with an operator's key."""
    made = subprocess.run(
        [AETHERIS, "keys", "create", "--role", "operator", "--tenant", "default", "--json"],
        cwd=folder, env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    port = free_port()
    server = processes.start(folder, env, "server", "--port", str(port))
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert server.poll() is None, server.stdout.read()  # type: ignore[union-attr]
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
        return False

    wait_until(up, "the server")
    return {**env, "AETHERIS_URL": url, "AETHERIS_API_KEY": json.loads(made.stdout)["key"]}


@pytest.mark.parametrize("where", ["database", "server"])
def test_chat_continues_a_conversation_with_its_history(
    tmp_path: Path, stub: StubServer, processes: Processes, where: str
) -> None:
    folder = make_project(tmp_path)
    env = project_env(AETHERIS_LLM_URL=stub.url, AETHERIS_LLM_MODEL="local")
    stub.script.faults.clear()
    processes.start(folder, env, "worker")
    if where == "server":
        env = through_a_server(folder, env, processes)
    chat = processes.start(folder, env, "chat", "chat")
    out = Lines(chat.stdout)  # type: ignore[arg-type]
    job_id = out.wait_for(r"^conversation \S+ with chat").split()[1]
    say(chat, "alpha")
    out.wait_for(r"^chat> reply alpha$")
    chat.stdin.close()  # type: ignore[union-attr]  # Ctrl-D: leave, the job stays parked
    out.wait_for(rf"continue with: aetheris chat chat --job {job_id}")
    assert chat.wait(timeout=10) == 0

    again = processes.start(folder, env, "chat", "chat", "--job", job_id[:13])
    more = Lines(again.stdout)  # type: ignore[arg-type]
    more.wait_for(r"^you> alpha$")
    more.wait_for(r"^chat> reply alpha$")
    say(again, "bravo")
    more.wait_for(r"^chat> reply bravo$")
    say(again, "/end")
    more.wait_for(rf"^conversation {job_id} ended$")
    assert again.wait(timeout=10) == 0
