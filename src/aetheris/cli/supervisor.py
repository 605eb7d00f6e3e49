"""``aetheris run``: a project on one machine, for development.

It starts two children, ``aetheris server --no-auth`` (loopback only) and ``aetheris worker``,
each in its own process group so that Ctrl-C reaches this process alone; it then sends each
child one SIGTERM (the worker finishes what is in flight within its grace), or a second one on
a second Ctrl-C (the worker hands its jobs back at once). Without a model configured it serves
the project's scripted model (:mod:`aetheris.llm.stub`) in a thread, and hands its URL to the
worker as ``AETHERIS_LLM_URL``.

A child that dies is reported with its exit status or signal, and started again: its jobs
resume where their journal ends (a child that dies within :data:`STARTUP` seconds of its
start did not start: then everything stops). The worker's log is shown as one line per job
start, park, resume and end; its warnings and errors as they are.

Auth: none, on loopback only (the server refuses ``--no-auth`` anywhere else). Whoever can run
programs on this machine can already read the SQLite file; a key printed once would protect
nothing here. A server for others is ``aetheris server`` with ``aetheris keys``.

If this process is killed with SIGKILL its children live on (they are in their own process
groups); stop them with SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx

from aetheris.app import App
from aetheris.cli import config as project_config
from aetheris.cli.base import Env, database_option, main, pass_env, run
from aetheris.errors import AetherisError
from aetheris.store import safe_url

STARTUP = 3.0  # seconds: a child that dies sooner did not start
STOP_TIMEOUT = 30.0  # seconds for the children to stop before they are killed
LOG_LINE = re.compile(r"^\S+ (\d\d:\d\d:\d\d)\S* (\w+) (\S+) (.*)$")  # the worker's format
UVICORN_LINE = re.compile(r"^(INFO|DEBUG):\s")


def ui_url(server_url: str) -> str:
    """Where the server serves the web UI (``/ui/``), shown in the banner."""
    return f"{server_url.rstrip('/')}/ui/"


@dataclass
class Child:
    """One supervised process: its command, the process and when it started."""

    name: str
    argv: list[str]
    proc: asyncio.subprocess.Process | None = None
    started: float = 0.0
    pump: asyncio.Task[None] | None = None
    restarts: int = field(default=0)


def describe_exit(code: int) -> str:
    """``exit 1`` or ``killed by SIGKILL``."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit {code}"


def echo(line: str, err: bool = False) -> None:
    click.echo(line, err=err)
    (sys.stderr if err else sys.stdout).flush()


def parse_line(line: str) -> tuple[str, str, str, str] | None:
    """A log line's time (HH:MM:SS), level, logger and message (with a failure's traceback):
    the worker logs JSON (``--log-format json``), the server text; None for other output."""
    if line.startswith("{"):
        try:
            doc = json.loads(line)
            at = str(doc["time"])[11:19]
            message = str(doc["message"])
            if doc.get("exc_info"):
                message += "\n" + str(doc["exc_info"])
            return at, str(doc["level"]), str(doc["logger"]), message
        except (ValueError, KeyError, TypeError):
            return None
    found = LOG_LINE.match(line)
    if found is None:
        return None
    at, level, logger, message = found.groups()
    return at, level, logger, message


def show(child: Child, line: str) -> None:
    """A child's output line, as the run shows it: job lines as they are (with their time),
    other INFO lines of the worker and the server's access log left out."""
    found = parse_line(line)
    if found:
        at, level, logger, message = found
        if logger == "aetheris.worker.jobs":
            echo(f"{at}  {message}")
        elif level != "INFO" and level != "DEBUG":
            echo(f"{at}  {child.name}: {level.lower()}: {message}")
        return
    if not UVICORN_LINE.match(line):
        echo(f"{child.name}: {line}")


class Supervisor:
    """Runs the children until asked to stop (see the module's docstring)."""

    def __init__(self, children: list[Child], env: dict[str, str]) -> None:
        self.children = children
        self.env = env
        self.stops = 0
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        self.stops += 1
        if self.stops == 1:
            echo("stopping: the worker finishes what is in flight (Ctrl-C again: at once)")
        self.stopping.set()
        for child in self.children:
            self._signal(child, signal.SIGTERM)

    def _signal(self, child: Child, sig: signal.Signals) -> None:
        if child.proc is not None and child.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(sig)

    async def spawn(self, child: Child) -> None:
        child.proc = await asyncio.create_subprocess_exec(
            *child.argv,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            process_group=0,
        )
        child.started = time.monotonic()
        child.pump = asyncio.create_task(self._pump(child, child.proc))

    async def _pump(self, child: Child, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            show(child, raw.decode("utf-8", "replace").rstrip())

    async def watch(self) -> int:
        """Until stopped: restart a child that died (report it first). The exit code."""
        stopping: asyncio.Task[Any] = asyncio.create_task(self.stopping.wait())
        while not self.stopping.is_set():
            waits: dict[asyncio.Task[Any], Child] = {
                asyncio.create_task(c.proc.wait()): c for c in self.children if c.proc
            }
            done, _ = await asyncio.wait({stopping, *waits}, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()
            for task in done & waits.keys():
                if not await self._restart(waits[task]):
                    return 1
        return await self.wait_all()

    async def _restart(self, child: Child) -> bool:
        assert child.proc is not None
        assert child.proc.returncode is not None
        if self.stopping.is_set():
            return True
        if child.pump is not None:
            await child.pump  # its last words first
        how = describe_exit(child.proc.returncode)
        if time.monotonic() - child.started < STARTUP:
            echo(f"{child.name} could not start ({how}): stopping", err=True)
            self.stop()
            await self.wait_all()
            return False
        child.restarts += 1
        what = "its jobs resume where they were" if child.name == "worker" else "restarting"
        echo(f"{child.name} stopped unexpectedly ({how}); starting it again: {what}")
        await self.spawn(child)
        return True

    async def wait_all(self) -> int:
        """Wait for every child to end (killing those that outlive STOP_TIMEOUT)."""
        for child in self.children:
            if child.proc is None:
                continue
            try:
                await asyncio.wait_for(child.proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                echo(f"{child.name} did not stop within {STOP_TIMEOUT:g}s: killing it", err=True)
                self._signal(child, signal.SIGKILL)
                await child.proc.wait()
            if child.pump is not None:
                await child.pump
        # uvicorn ends by raising the SIGTERM it handled again: that too is a clean stop.
        ends = {c.name: c.proc.returncode for c in self.children if c.proc is not None}
        unclean = [
            f"{name} {describe_exit(code)}"
            for name, code in ends.items()
            if code is not None and code not in (0, -signal.SIGTERM)
        ]
        echo(f"stopped: {', '.join(unclean)}" if unclean else "stopped cleanly")
        return 1 if unclean else 0


async def wait_ready(supervisor: Supervisor, server: Child, url: str) -> bool:
    """Until the server answers ``/healthz``, or it or the run stops first."""
    async with httpx.AsyncClient(timeout=1.0) as client:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not supervisor.stopping.is_set():
            if server.proc is not None and server.proc.returncode is not None:
                return False
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return True
            await asyncio.sleep(0.1)
    return False


def _cli(database_url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "aetheris", "--database-url", database_url, *args]


async def supervise(plan: Plan) -> int:
    """Start the children, wait for the server, say where to look, and watch them."""
    children = [
        Child("server", _cli(plan.database_url, "server", *plan.server_args)),
        Child("worker", _cli(plan.database_url, "worker", *plan.worker_args)),
    ]
    supervisor = Supervisor(children, plan.env)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, supervisor.stop)
    for child in children:
        await supervisor.spawn(child)
    if not await wait_ready(supervisor, children[0], plan.url):
        asked = supervisor.stopping.is_set()  # Ctrl-C while starting
        if not asked:
            echo(f"the server did not answer at {plan.url}: stopping", err=True)
            supervisor.stop()
        await supervisor.wait_all()
        return 0 if asked else 1
    echo(plan.banner())
    if not plan.demo:
        return await supervisor.watch()
    demo = asyncio.create_task(_demo(supervisor, children[1], plan.url))
    code = await supervisor.watch()
    return code or await demo


async def _demo(supervisor: Supervisor, worker: Child, url: str) -> int:
    """Run the demo (:mod:`aetheris.cli.tour`) and then stop; 1 if it did not finish."""
    from aetheris.cli import tour
    from aetheris.client import Client

    async with Client(url, "") as client:
        try:
            steps = tour.Tour(
                client,
                kill_worker=lambda: supervisor._signal(worker, signal.SIGKILL),
                worker_age=lambda: time.monotonic() - worker.started,
            )
            job_id = await steps.run(STARTUP)
            await tour.show_trace(client, job_id)
            echo(f"see it again: aetheris trace {job_id}; keep a project up: aetheris run")
            code = 0
        except (click.ClickException, AetherisError) as exc:
            echo(f"the demo stopped: {exc}", err=True)
            code = 1
    if not supervisor.stopping.is_set():
        supervisor.stop()
    return code


@dataclass
class Plan:
    """What ``aetheris run`` starts, with what, and what it tells the user."""

    app_spec: str
    agents: list[str]
    database_url: str
    host: str
    port: int
    concurrency: int
    model: str
    env: dict[str, str]
    demo: bool = False
    metrics_port: int | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def server_args(self) -> list[str]:
        return ["--app", self.app_spec, "--host", self.host, "--port", str(self.port), "--no-auth"]

    @property
    def worker_args(self) -> list[str]:
        args = ["--app", self.app_spec, "--concurrency", str(self.concurrency)]
        if self.metrics_port is not None:
            args += ["--metrics-port", str(self.metrics_port)]
        return [*args, "--log-format", "json"]  # read line by line: see parse_line

    @property
    def _worker_metrics(self) -> str:
        if self.metrics_port is None:
            return " (the worker's: --metrics-port)"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f", the worker's at http://{host}:{self.metrics_port}/metrics"

    def banner(self) -> str:
        return "\n".join(
            [
                "Aetheris is running (Ctrl-C stops it)",
                f"  server    {self.url}  (no API key on loopback; API docs at {self.url}/docs)",
                f"  web UI    {ui_url(self.url)}",
                f"  metrics   {self.url}/metrics{self._worker_metrics}",
                f"  database  {safe_url(self.database_url)}",
                f"  model     {self.model}",
                f"  app       {self.app_spec}: agents {', '.join(self.agents) or '(none)'}",
                "in another terminal:",
                "  aetheris start AGENT --input JSON         # start a job (--wait: its result)",
                "  aetheris approvals list                   # what waits for a person",
                "  aetheris approve JOB_ID                   # or: aetheris reject JOB_ID",
                "  aetheris chat AGENT                       # talk to a chat agent",
                "  aetheris trace JOB_ID                     # what a job did",
                "jobs:",
            ]
        )


def start_model(settings: project_config.ProjectConfig, env: dict[str, str]) -> str:
    """The model the worker uses: the configured one, else the project's scripted model
    served here (in a thread of this process, for as long as it runs). Says which."""
    if env.get("AETHERIS_LLM_URL"):
        return (
            f"{env.get('AETHERIS_LLM_MODEL', '(AETHERIS_LLM_MODEL unset)')} at "
            + env["AETHERIS_LLM_URL"]
        )
    script = settings.model_script or Path("model_script.json")
    if not script.is_file():
        return "none: set AETHERIS_LLM_URL, or [model] url in aetheris.toml"
    from aetheris.llm.stub import StubServer

    try:
        stub = StubServer(script).start()
    except (ValueError, OSError) as exc:
        raise click.ClickException(f"cannot serve the scripted model {script}: {exc}") from None
    env["AETHERIS_LLM_URL"] = stub.url
    env.setdefault("AETHERIS_LLM_MODEL", settings.model or "local")
    return (
        f"scripted ({script.name}, at {stub.url}); set [model] url in aetheris.toml for a real one"
    )


@main.command("run")
@click.option("--app", "app_spec", metavar="MOD:APP", help="The App (default: aetheris.toml's).")
@click.option("--host", default="127.0.0.1", show_default=True, help="A loopback address.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--concurrency", default=10, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Have the worker serve its Prometheus metrics on this port (the server's are at "
    "/metrics).",
)
@click.option(
    "--demo",
    is_flag=True,
    help="Run the project's support agent once (a refund a person approves), show it, stop.",
)
@database_option
@pass_env
@click.pass_context
def run_command(
    ctx: click.Context,
    env: Env,
    app_spec: str | None,
    host: str,
    port: int,
    concurrency: int,
    metrics_port: int | None,
    demo: bool,
) -> None:
    """Run the project here: the HTTP API (no key, on loopback) and a worker, on the
    embedded database by default, showing jobs as they run, until Ctrl-C.

    Without a model configured (AETHERIS_LLM_URL, or [model] url in aetheris.toml) it serves
    the project's scripted model (model_script.json). With --demo it runs the new project's
    support agent once, from the question to a person's approval (while its worker is killed
    with SIGKILL) to its answer, prints its trace and stops."""
    from aetheris.api.server import is_loopback

    if not app_spec:
        raise click.UsageError(
            "no App: run this in a project's folder (`aetheris init DIR` makes one) or pass --app"
        )
    if not is_loopback(host):
        raise click.UsageError(
            f"aetheris run serves without API keys, so on loopback only, not {host}: "
            "serve others with `aetheris server` and `aetheris keys`"
        )
    settings = ctx.meta.get(project_config.FILENAME) or project_config.ProjectConfig()
    app = env.app(app_spec)
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    model = start_model(settings, child_env)
    run(_migrate(app), app.database_url)  # before two children try at once
    if demo and "support" not in app.agent_names:
        raise click.UsageError(
            "--demo runs the support agent of a project `aetheris init` made; this App has none"
        )
    if demo:
        port = _available(host, port)  # a demo should not fail on a port something else holds
    names, url = app.agent_names, app.database_url
    plan = Plan(app_spec, names, url, host, port, concurrency, model, child_env, demo, metrics_port)
    sys.exit(asyncio.run(supervise(plan)))


def _available(host: str, port: int) -> int:
    """``port`` if it can be listened on at ``host``, else one the system picks (said)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for wanted in (port, 0):
        with socket.socket(family) as probe:
            try:
                probe.bind((host, wanted))
            except OSError:
                continue
            found: int = probe.getsockname()[1]
        if found != port:
            echo(f"port {port} is taken: serving on {found}")
        return found
    return port


async def _migrate(app: App) -> None:
    try:
        await app.open_store()
    finally:
        await app.close()


__all__ = [
    "Child",
    "Plan",
    "Supervisor",
    "describe_exit",
    "parse_line",
    "run_command",
    "ui_url",
]
