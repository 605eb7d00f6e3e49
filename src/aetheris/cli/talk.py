"""``aetheris chat AGENT``: talk to a chat agent from the terminal (see :mod:`aetheris.chat`).

Each line typed is a signal ``message`` to the job; each ``reply`` step the job journals is
printed as soon as its event is there. The terminal only reads the journal and sends signals,
so it may come and go (Ctrl-D, then ``--job ID``), and workers may die under it: the
conversation is the job's journal.

It talks to the database through :class:`Local`, or to a server (``--url``/``AETHERIS_URL``
with a key) through :class:`Remote`: the same few calls (:class:`Backend`), there ``GET
/v1/jobs/{id}/events?after=`` and ``POST /v1/jobs/{id}/signals/message``.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import uuid
from typing import Any, Protocol

import click

from aetheris import chat
from aetheris.app import App
from aetheris.cli.base import Env, database_option, parse_json, pass_env, resolve_job_id, run
from aetheris.cli.base import main as cli_main
from aetheris.client import Client
from aetheris.journal import Event
from aetheris.store.port import Job, JobStatus

POLL = 0.1  # seconds between looks at the journal
COMMANDS = "/end ends the conversation; Ctrl-D (or /exit) leaves it, to continue later"


class Backend(Protocol):
    """What a conversation needs of Aetheris: local (:class:`Local`) or over HTTP."""

    async def start(self, agent: str, data: dict[str, Any]) -> str: ...
    async def job(self, job_id: str) -> Job: ...
    async def events_after(self, job_id: str, seq: int) -> list[Event]: ...
    async def waiting_for(self, job_id: str) -> str | None: ...
    async def say(self, job_id: str, payload: dict[str, Any]) -> None: ...
    async def warning(self, agent: str) -> str | None: ...


class Local:
    """The database, through the App's own verbs."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def start(self, agent: str, data: dict[str, Any]) -> str:
        return (await self.app.start(agent, data)).job_id

    async def job(self, job_id: str) -> Job:
        return await self.app.get_job(job_id)

    async def events_after(self, job_id: str, seq: int) -> list[Event]:
        store = await self.app.open_store()
        return await store.events(job_id, after=seq)

    async def waiting_for(self, job_id: str) -> str | None:
        return await self.app.waiting_for(job_id)

    async def say(self, job_id: str, payload: dict[str, Any]) -> None:
        sender = "aetheris chat"
        await self.app.signal(
            job_id, chat.MESSAGE, payload, signal_id=str(uuid.uuid4()), sender=sender
        )

    async def warning(self, agent: str) -> str | None:
        return (await self.app.serving(agent)).warning


class Remote:
    """A server, through :class:`aetheris.Client` (the key's role must start and signal)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def start(self, agent: str, data: dict[str, Any]) -> str:
        return (await self.client.start(agent, data)).job_id

    async def job(self, job_id: str) -> Job:
        return await self.client.get_job(job_id)

    async def events_after(self, job_id: str, seq: int) -> list[Event]:
        return await self.client.events(job_id, after=seq)

    async def waiting_for(self, job_id: str) -> str | None:
        return (await self.client.get_job(job_id)).waiting_for

    async def say(self, job_id: str, payload: dict[str, Any]) -> None:
        await self.client.signal(job_id, chat.MESSAGE, payload, signal_id=str(uuid.uuid4()))

    async def warning(self, agent: str) -> str | None:
        served = {a.name: a.workers for a in await self.client.agents()}
        if served.get(agent):
            return None
        if agent not in served:
            return f"no worker has ever served agent {agent!r} on this server's database"
        return f"no live worker serves agent {agent!r} now: its jobs wait until one starts"


def lines() -> asyncio.Queue[str | None]:
    """Standard input's lines as they are typed (``None`` at its end), read by a daemon
    thread so that leaving never waits for a blocked read."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\n"))
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=read, name="aetheris-chat-stdin", daemon=True).start()
    return queue


class Conversation:
    """One terminal's view of a chat job: what it printed (up to ``seq``) and what it awaits."""

    def __init__(self, backend: Backend, agent: str, job_id: str) -> None:
        self.backend = backend
        self.agent = agent
        self.job_id = job_id
        self.seq = -1
        self.sent = 0  # messages sent whose consumption the journal does not show yet
        self.noted: str | None = None  # the last park shown, to show each once

    def show(self, events: list[Event], history: bool = False) -> None:
        for turn in chat.turns(events):
            if turn.speaker == "agent":
                click.echo(f"{self.agent}> {turn.text}")
            else:
                self.sent = max(0, self.sent - 1)
                if history:
                    click.echo(f"you> {turn.text}" if turn.speaker == "user" else "(ended)")
        if events:
            self.seq = events[-1].seq
        sys.stdout.flush()

    async def catch_up(self) -> Job:
        """Print what is new in the journal; the job as it is now."""
        job = await self.backend.job(self.job_id)  # first the job, then the events it implies
        self.show(await self.backend.events_after(self.job_id, self.seq))
        return job

    async def until_listening(self) -> Job:
        """Print replies as they come until the job waits for a message (or has ended)."""
        pending_since: float | None = None
        while True:
            job = await self.catch_up()
            if job.status.terminal:
                return job
            if job.status is JobStatus.PARKED and not self.sent:
                if await self.backend.waiting_for(self.job_id) == chat.MESSAGE:
                    return job
                self.note(job)
            if job.status is not JobStatus.PENDING:
                pending_since = None
            elif pending_since is None:
                pending_since = time.monotonic()
            elif time.monotonic() - pending_since > 5:
                await self.hint_pending()
            await asyncio.sleep(POLL)

    def note(self, job: Job) -> None:
        """Say once why the job waits, when it is not for the user's next message."""
        detail = job.park_detail or {}
        key = f"{job.park_reason}:{detail.get('position')}"
        if key == self.noted:
            return
        self.noted = key
        if job.park_reason == "approval":
            how = f"`aetheris approve {self.job_id}` (or reject) in another terminal"
            click.echo(f"... waiting for an approval: {how}", err=True)
        else:
            message = detail.get("message") or job.park_reason
            click.echo(f"... the job is parked ({job.park_reason}): {message}", err=True)

    async def hint_pending(self) -> None:
        if self.noted != "pending":
            self.noted = "pending"
            why = await self.backend.warning(self.agent) or "every worker serving it is busy"
            click.echo(f"... the job is not picked up yet: {why}", err=True)

    async def say(self, payload: dict[str, Any]) -> None:
        await self.backend.say(self.job_id, payload)
        self.sent += 1
        self.noted = None


async def talk(backend: Backend, agent: str, job_id: str | None, data: dict[str, Any]) -> int:
    """The conversation loop; the exit code."""
    continuing = job_id is not None
    if job_id is None:
        job_id = await backend.start(agent, data)
    click.echo(f"conversation {job_id} with {agent}. {COMMANDS}.", err=True)
    conversation = Conversation(backend, agent, job_id)
    if continuing:
        conversation.show(await backend.events_after(job_id, -1), history=True)
    typed = lines()
    while True:
        job = await conversation.until_listening()
        if job.status.terminal:
            return ended(job)
        if sys.stdin.isatty():
            click.echo("you> ", nl=False)
        line = await typed.get()
        if line is None or line.strip() in ("/exit", "/quit"):
            click.echo(f"left; continue with: aetheris chat {agent} --job {job_id}", err=True)
            return 0
        if line.strip() == "/end":
            await conversation.say(chat.end_payload())
        elif line.strip():
            await conversation.say(chat.message_payload(line))


def ended(job: Job) -> int:
    if job.status is JobStatus.SUCCEEDED:
        click.echo(f"conversation {job.id} ended", err=True)
        return 0
    error = job.error or {}
    detail = f": {error.get('type')}: {error.get('message')}" if error else ""
    click.echo(f"conversation {job.id} {job.status}{detail}", err=True)
    return 1


async def _local(app: App, agent: str, job_id: str | None, data: dict[str, Any]) -> int:
    try:
        backend = Local(app)
        found = await resolve_job_id(await app.open_store(), job_id) if job_id else None
        return await talk(backend, agent, await _continued(backend, agent, found), data)
    finally:
        await app.close()


async def _remote(
    url: str, key: str | None, agent: str, job_id: str | None, data: dict[str, Any]
) -> int:
    async with Client(url, key or "") as client:
        found = await resolve_job_id(client, job_id) if job_id else None
        backend = Remote(client)
        return await talk(backend, agent, await _continued(backend, agent, found), data)


async def _continued(backend: Backend, agent: str, job_id: str | None) -> str | None:
    """The conversation to continue, which must be one with ``agent``."""
    if job_id is not None and (await backend.job(job_id)).agent != agent:
        raise click.UsageError(f"job {job_id} is not a conversation with {agent}")
    return job_id


@cli_main.command("chat")
@click.argument("agent")
@click.option("--job", "job_id", help="Continue this conversation (a job id, or its start).")
@click.option(
    "--input", "input_json", default="{}", show_default=True, help="A new job's input (JSON)."
)
@database_option
@pass_env
def chat_command(env: Env, agent: str, job_id: str | None, input_json: str) -> None:
    """Talk to AGENT: a new conversation (a job), or --job ID to continue one.

    Each line is a signal `message` {"text": LINE} to the job; each step `reply` it journals
    is printed as it lands. /end ends the conversation (the agent returns); Ctrl-D leaves it
    parked, to continue later. See `aetheris.chat` for writing such an agent."""
    data = parse_json(input_json, "--input")
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--input")
    try:
        if env.remote:
            assert env.server_url is not None
            code = run(
                _remote(env.server_url, env.api_key, agent, job_id, data), server=env.server_url
            )
        else:
            app = env.app()
            code = run(_local(app, agent, job_id, data), app.database_url)
    except KeyboardInterrupt:
        click.echo("\nleft the conversation: `aetheris chat --job ID` continues it", err=True)
        code = 130
    sys.exit(code)


__all__ = ["Backend", "Conversation", "Local", "Remote", "chat_command", "talk"]
