"""``aetheris run --demo``: one real run of the project's ``support`` agent, shown as it goes.

Through the HTTP API that ``aetheris run`` serves, as any client would: it asks for a refund,
shows the model calls and tool calls land in the journal, waits while the job is parked for a
person's approval (holding no worker), kills the worker with SIGKILL meanwhile (the supervisor
starts another), approves the exact refund the way a person would (the journal names the
demo as the approver), and prints the trace of the job once it has ended. Then ``aetheris
run`` stops, unless told to keep running.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import click

from aetheris.cli import render, trace_view
from aetheris.client import Client, PendingApproval
from aetheris.journal import Event, EventType
from aetheris.store.port import Job, JobStatus

AGENT = "support"
QUESTION = "Please refund order o1."
WAIT = 60.0  # seconds for each stage of the run


def say(line: str) -> None:
    click.echo(click.style(f"demo: {line}", bold=True))


class Tour:
    """The demo's steps; ``kill_worker`` kills the supervised worker, ``worker_age`` says how
    long it has been up (a worker killed too soon after its start would not be restarted)."""

    def __init__(self, client: Client, kill_worker: Any, worker_age: Any) -> None:
        self.client = client
        self.kill_worker = kill_worker
        self.worker_age = worker_age
        self.seen = -1

    async def run(self, startup: float) -> str:
        """The whole demo; the id of its job."""
        handle = await self.client.start(AGENT, {"question": QUESTION})
        job_id = handle.job_id
        say(f"started job {job_id} of agent {AGENT!r}: {QUESTION!r}")
        job = await self.until(job_id, lambda j: j.status is JobStatus.PARKED)
        pending = await self.pending(job_id)
        request = pending.request.get("payload") or pending.request
        args = json.dumps(request.get("kwargs") or request.get("args") or request, sort_keys=True)
        say(f"parked: {request.get('tool', pending.name)} {args} waits for a person's approval")
        say("a parked job holds no worker: killing the worker now (SIGKILL) changes nothing")
        await asyncio.sleep(max(0.0, startup + 0.5 - self.worker_age()))
        self.kill_worker()
        await asyncio.sleep(1.0)
        say("approving exactly that refund, through the API, as a person would")
        await self.client.approve(
            job_id,
            position=pending.position,
            args_hash=pending.args_hash,
            comment="approved by `aetheris run --demo`",
        )
        job = await self.until(job_id, lambda j: j.status.terminal)
        say(f"job {job_id} {job.status}: {job.result!r}")
        return job_id

    async def pending(self, job_id: str) -> PendingApproval:
        for request in await self.client.approvals():
            if request.job_id == job_id:
                return request
        raise click.ClickException(f"job {job_id} is parked, but not for an approval")

    async def until(self, job_id: str, done: Any) -> Job:
        """Show the job's new journal entries until ``done(job)``; the job then."""
        deadline = time.monotonic() + WAIT
        while True:
            job = await self.client.get_job(job_id)
            self.show(await self.client.events(job_id, after=self.seen))
            if done(job):
                return job
            if job.status.terminal or time.monotonic() > deadline:
                raise click.ClickException(f"job {job_id} is {job.status}: the demo stops here")
            await asyncio.sleep(0.1)

    def show(self, events: list[Event]) -> None:
        for event in events:
            self.seen = event.seq
            if event.type is EventType.OP:
                kind, name, outcome, _, detail = trace_view.describe(event)
                say(f"  journal {event.seq}: {kind} {name}: {outcome}  {detail}".rstrip())


async def show_trace(client: Client, job_id: str) -> None:
    job = await client.get_job(job_id)
    render.show(trace_view.trace_table(job, await client.events(job_id)))


__all__ = ["AGENT", "Tour", "show_trace"]
