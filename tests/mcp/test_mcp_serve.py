"""``aetheris mcp serve`` as a process, driven by the ``mcp`` SDK's client: over stdio on the
database and through a real ``aetheris server``, over streamable HTTP through the server and on
the database, and at ``/mcp`` of ``aetheris server --mcp``. A real
worker process runs the jobs (``served_app.py``); every call acts with an API key of the
database, and a viewer's key may read but neither start nor approve."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import httpx2
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from aetheris import App
from aetheris.keys import create_key
from tests.processes import ROOT

HERE = Path(__file__).resolve().parent
APP = "served_app:app"
TOOLS = {"start_job", "get_job", "get_trace", "list_jobs", "list_agents", "list_approvals",
         "answer_approval"}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(check: Callable[[], bool], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class World:
    """A SQLite database with keys of every role, a worker process serving ``served_app``,
    and how to reach ``aetheris mcp serve`` in one of three set-ups."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AETHERIS_")}
        self.env.update(
            AETHERIS_DATABASE_URL=f"sqlite:///{tmp_path / 'aetheris.db'}",
            PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT), str(HERE)]),
            PYTHONUNBUFFERED="1",
        )
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.keys = self.make_keys()
        self.server_url: str | None = None
        self.mcp_url: str | None = None

    def make_keys(self) -> dict[str, str]:
        """A key of each role in the default tenant (made here: a command per key is slow)."""

        async def make() -> dict[str, str]:
            async with App(self.env["AETHERIS_DATABASE_URL"]) as app:
                store = await app.open_store()
                roles = ("operator", "approver", "viewer")
                return {role: (await create_key(store, role, "default"))[1] for role in roles}

        return asyncio.run(make())

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        log = self.tmp_path / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "aetheris", *args],
                cwd=HERE, env={**self.env, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.started.append((proc, log))

    def log(self, name: str) -> IO[str]:
        return open(self.tmp_path / f"{name}.log", "a")  # the caller closes it

    def answers(self, url: str, name: str) -> Callable[[], bool]:
        """Whether the process just started answers at ``url`` (it must not have exited)."""
        proc, log = self.started[-1]

        def check() -> bool:
            assert proc.poll() is None, f"{name} exited: {log.read_text(errors='replace')}"
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(url, timeout=1)
                return True
            return False

        return check

    def serve_api(self, *options: str) -> Callable[[], bool]:
        port = free_port()
        self.server_url = f"http://127.0.0.1:{port}"
        self.spawn("server", "server", "--app", APP, "--port", str(port), *options)
        return self.answers(f"{self.server_url}/readyz", "the server")

    def serve_mcp_http(self, *through: str) -> Callable[[], bool]:
        port = free_port()
        self.mcp_url = f"http://127.0.0.1:{port}/mcp"
        args = ["mcp", "serve", "--transport", "http", "--port", str(port), *through]
        self.spawn("mcp", *args)
        return self.answers(self.mcp_url, "aetheris mcp serve")

    def close(self) -> None:
        for proc, _ in self.started:
            if proc.poll() is None:
                proc.terminate()
        for proc, _ in self.started:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


EVERY = ["stdio-database", "stdio-server", "http-server", "http-database", "server-mcp"]
KEYED = ["stdio-database", "stdio-server", "http-server", "server-mcp"]


@pytest.fixture
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    made = World(tmp_path)
    try:
        made.spawn("worker", "worker", "--app", APP)
        up = []  # the processes start together, then each is waited for
        if request.param.endswith("-server"):
            up.append(made.serve_api())
        if request.param == "server-mcp":  # aetheris server --mcp: the tools at its /mcp
            up.append(made.serve_api("--mcp"))
            made.mcp_url = f"{made.server_url}/mcp"
        if request.param == "http-server":
            up.append(made.serve_mcp_http("--url", made.server_url or ""))
        elif request.param == "http-database":
            up.append(made.serve_mcp_http("--app", APP))
        for check in up:
            wait_until(check, "a server")
        yield made
    finally:
        made.close()


@contextlib.asynccontextmanager
async def connected(world: World, role: str) -> AsyncIterator[Client]:
    """The SDK's client on ``aetheris mcp serve`` with the key of ``role``: a process it
    starts itself (stdio), or the HTTP server with the key as a bearer token."""
    key = world.keys.get(role)  # "nobody": no key at all
    keyed = {"AETHERIS_API_KEY": key} if key else {}
    if world.mcp_url is None:  # through the server when there is one, else on the database
        where = ["--url", world.server_url] if world.server_url else ["--app", APP]
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "aetheris", "mcp", "serve", *where],
            env={**world.env, **keyed},
            cwd=HERE,
        )
        with world.log(f"mcp-stdio-{role}") as errlog:
            async with Client(stdio_client(params, errlog=errlog)) as client:
                yield client
        return
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    http = httpx2.AsyncClient(headers=headers, timeout=30)
    async with http, Client(streamable_http_client(world.mcp_url, http_client=http)) as client:
        yield client


async def call(client: Client, tool: str, **arguments: Any) -> Any:
    """A tool's JSON answer (the test fails on a tool error, with its text)."""
    result = await client.call_tool(tool, arguments)
    text = "".join(getattr(c, "text", "") for c in result.content)
    assert not result.is_error, f"{tool}: {text}"
    return json.loads(text)


async def refused(client: Client, tool: str, **arguments: Any) -> str:
    """The text of the tool error a call must end with."""
    result = await client.call_tool(tool, arguments)
    text = "".join(getattr(c, "text", "") for c in result.content)
    assert result.is_error, f"{tool} answered {text}"
    return text


async def until(client: Client, job_id: str, status: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        job = await call(client, "get_job", job_id=job_id)
        if job["status"] == status:
            return job
        assert time.monotonic() < deadline, f"job {job_id} is {job['status']}, not {status}"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("world", EVERY, indirect=True)
async def test_an_assistant_starts_a_job_answers_its_approval_and_reads_its_trace(
    world: World,
) -> None:
    async with connected(world, "operator") as operator:
        assert {t.name for t in (await operator.list_tools()).tools} == TOOLS
        agents = (await call(operator, "list_agents"))["agents"]
        by_name = {a["name"]: a for a in agents}
        assert {"refund", "greet"} <= set(by_name)
        assert set(by_name["refund"]["input_schema"]["properties"]) == {"order_id", "amount"}
        started = await call(
            operator, "start_job", agent="refund", input={"order_id": "o1", "amount": 9.5},
            idempotency_key="refund-o1",
        )  # fmt: skip
        job_id = started["id"]
        assert started["agent"] == "refund" and started["input"]["order_id"] == "o1"
        again = await call(
            operator, "start_job", agent="refund", input={"order_id": "o1", "amount": 9.5},
            idempotency_key="refund-o1",
        )  # fmt: skip
        assert again["id"] == job_id  # one job per idempotency key
        parked = await until(operator, job_id, "parked")
        assert parked["park_reason"] == "approval"
    async with connected(world, "approver") as approver:
        pending = (await call(approver, "list_approvals"))["approvals"]
        assert [(a["job_id"], a["name"]) for a in pending] == [(job_id, "refund")]
        assert pending[0]["request"]["payload"] == {"order_id": "o1", "amount": 9.5}
        answer = await call(
            approver, "answer_approval", job_id=job_id, decision="approve",
            comment="refund ok", position=pending[0]["position"],
            args_hash=pending[0]["args_hash"],
        )  # fmt: skip
        assert answer["signal"]["job_id"] == job_id
        done = await until(approver, job_id, "succeeded")
        assert done["result"]["refunded"] is True
        assert done["result"]["receipt"] == "refund-o1-9.5"
        assert (await call(approver, "list_approvals"))["approvals"] == []
    async with connected(world, "viewer") as viewer:
        trace = await call(viewer, "get_trace", job_id=job_id)
        assert trace["job"]["status"] == "succeeded"
        types = [e["type"] for e in trace["events"]]
        assert types[0] == "job_created" and types[-1] == "job_succeeded", types
        kinds = json.dumps(trace["events"])
        assert "refund ok" in kinds and "pay_back" in kinds
        page = await call(viewer, "get_trace", job_id=job_id, limit=2)
        assert [e["seq"] for e in page["events"]] == [e["seq"] for e in trace["events"][:2]]
        after = await call(viewer, "get_trace", job_id=job_id, after=page["next_after"])
        assert after["events"] == trace["events"][2:]
        listed = (await call(viewer, "list_jobs", status="succeeded"))["jobs"]
        assert [j["id"] for j in listed] == [job_id]


@pytest.mark.parametrize("world", KEYED, indirect=True)
async def test_a_viewer_key_reads_but_cannot_start_or_answer(world: World) -> None:
    async with connected(world, "operator") as operator:
        job_id = (await call(operator, "start_job", agent="refund",
                             input={"order_id": "o2", "amount": 1}))["id"]  # fmt: skip
        await until(operator, job_id, "parked")
    async with connected(world, "viewer") as viewer:
        text = await refused(viewer, "start_job", agent="greet", input={"name": "x"})
        assert "forbidden" in text and "'viewer' may not start" in text, text
        text = await refused(viewer, "answer_approval", job_id=job_id, decision="approve")
        assert "forbidden" in text and "'viewer' may not decide" in text, text
        assert (await call(viewer, "get_job", job_id=job_id))["status"] == "parked"
        assert len((await call(viewer, "list_approvals"))["approvals"]) == 1
    async with connected(world, "approver") as approver:
        text = await refused(approver, "start_job", agent="greet", input={"name": "x"})
        assert "forbidden" in text, text
        await call(approver, "answer_approval", job_id=job_id, decision="reject",
                   comment="not this one")  # fmt: skip
        done = await until(approver, job_id, "succeeded")
        assert done["result"]["refunded"] is False
        assert "not this one" in done["result"]["reason"]


@pytest.mark.parametrize("world", ["stdio-database", "http-server"], indirect=True)
async def test_unknown_agents_jobs_and_bad_input_are_tool_errors_naming_the_problem(
    world: World,
) -> None:
    async with connected(world, "operator") as operator:
        text = await refused(operator, "start_job", agent="nobody", input={})
        assert "unknown_agent" in text and "nobody" in text and "refund" in text, text
        text = await refused(operator, "get_job", job_id="job-that-is-not-there")
        assert "not_found" in text and "job-that-is-not-there" in text, text
        text = await refused(operator, "get_trace", job_id="job-that-is-not-there")
        assert "not_found" in text, text
        text = await refused(operator, "start_job", agent="refund", input={"order_id": "o3"})
        assert "invalid_input" in text and "amount" in text, text
        text = await refused(operator, "list_jobs", status="done")
        assert "invalid_input" in text and "succeeded" in text, text
        job = await call(operator, "start_job", agent="greet", input={"name": "ada"})
        assert (await until(operator, job["id"], "succeeded"))["result"] == "hello ada"
    async with connected(world, "approver") as approver:
        text = await refused(approver, "answer_approval", job_id="job-that-is-not-there",
                             decision="approve")  # fmt: skip
        assert "not_found" in text and "job-that-is-not-there" in text, text
        text = await refused(approver, "answer_approval", job_id=job["id"], decision="approve")
        assert "conflict" in text and "succeeded" in text, text
    async with connected(world, "nobody") as nobody:
        if world.server_url is None:  # stdio on the database: its owner, as other commands
            job = await call(nobody, "start_job", agent="greet", input={"name": "bob"})
            assert job["status"] in {"pending", "running", "succeeded"}
        else:  # through a server, every call needs a key
            text = await refused(nobody, "start_job", agent="greet", input={"name": "bob"})
            assert "unauthorized" in text and "missing API key" in text, text
            text = await refused(nobody, "list_jobs")
            assert "unauthorized" in text, text


@pytest.mark.parametrize("world", ["server-mcp"], indirect=True)
def test_the_servers_mcp_endpoint_wants_a_valid_key(world: World) -> None:
    url = world.mcp_url or ""
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {"Accept": "application/json, text/event-stream"}
    answer = httpx.post(url, json=ping, headers=headers, timeout=10)
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["code"] == "unauthorized"
    wrong = {**headers, "Authorization": "Bearer ak_not_a_key"}
    answer = httpx.post(url, json=ping, headers=wrong, timeout=10)
    assert answer.status_code == 401 and "not valid" in answer.json()["error"]["message"]


def test_options_that_do_not_fit_are_usage_errors(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AETHERIS_")}
    env.update(
        AETHERIS_DATABASE_URL=f"sqlite:///{tmp_path / 'aetheris.db'}",
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT), str(HERE)]),
    )

    def serve(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "aetheris", "mcp", "serve", *args],
            cwd=HERE, env={**env, **extra}, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip

    done = serve("--transport", "http", "--host", "0.0.0.0", "--no-auth")
    assert done.returncode == 2 and "refusing to listen on 0.0.0.0" in done.stderr
    done = serve("--app", APP, AETHERIS_URL="http://127.0.0.1:9")
    assert done.returncode == 2, done.stderr
    assert "--app and --no-auth are for the database" in done.stderr
    assert "http://127.0.0.1:9" in done.stderr and "--database-url" in done.stderr
