"""Deterministic replay of a job's journal against the current code, executing nothing.

Replay runs the agent with every durable operation answered from the journal. It stops at the
first position the journal does not hold (no tool, step or model call is ever executed) and
reports a divergence with the same readable diff a worker would park with. The sandbox itself
is :func:`aetheris.versions.replay_journal`, which workers also use to check a job that other
code wrote before they run it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aetheris.app import App
from aetheris.errors import JobNotFound
from aetheris.journal import EventLike
from aetheris.store.port import Effect, Job
from aetheris.versions import ReplayReport, replay_journal

__all__ = ["ReplayReport", "replay", "replay_history"]


async def replay(app: App, job_id: str) -> ReplayReport:
    """Replay ``job_id``'s journal against ``app``'s code (read-only)."""
    store = await app.open_store(view="reveal")  # as the worker read it: secrets whole
    job = await store.get_job(job_id)
    if job is None:
        raise JobNotFound(job_id)
    events, effects = await store.events(job_id), await store.effects(job_id=job_id)
    return await replay_history(app, job, events, effects, await store.blobs(job_id))


async def replay_history(
    app: App,
    job: Job,
    events: Sequence[EventLike],
    effects: Sequence[Effect],
    blobs: Mapping[str, bytes] | None = None,
) -> ReplayReport:
    """Replay a job's recorded history (from a store or a bundle) against ``app``'s code."""
    return await replay_journal(
        app.agent_def(job.agent),
        job,
        events,
        effects,
        blobs,
        max_payload_bytes=app.max_payload_bytes,
        clock=app.clock,
    )
