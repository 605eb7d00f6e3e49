"""Pruning by a :class:`~aetheris.retention.Retention`: batch after batch, with a pause between
them, until no ended job is older than the cutoff (see :mod:`aetheris.store.pruning` for what a
batch deletes).

:func:`prune` is one prune, as ``aetheris db prune`` runs it. :class:`Pruner` is what a worker
runs beside its jobs: every ``interval`` seconds, one prune per pass of the plan (each agent
with its own retention, then every other agent with the App's). Workers share the turn through
a token bucket in the store (:meth:`~aetheris.store.port.Store.take_token`): on PostgreSQL one
prune starts per interval among all workers; on SQLite, which keeps the bucket in the process,
each worker process prunes once an interval (a batch is one write transaction, and a second
pruner finds nothing left). Rejected: a lease row of its own (the bucket already serializes
turns, and a prune that overruns its turn is harmless: batches lock with SKIP LOCKED).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aetheris.agents import AgentDef
from aetheris.errors import AetherisError
from aetheris.retention import FOREVER, Retention, show_age
from aetheris.store.port import Store
from aetheris.store.pruning import DEFAULT_BATCH, Pruned

log = logging.getLogger("aetheris.retention")
TOKEN = "aetheris:retention"


@dataclass(frozen=True, slots=True)
class Pass:
    """Prune jobs that ended more than ``older_than`` seconds ago: of ``agent`` when given,
    else of every agent but ``skip`` (those with a retention of their own)."""

    older_than: float
    agent: str | None = None
    skip: tuple[str, ...] = ()

    def describe(self) -> str:
        who = f"agent {self.agent}" if self.agent else "every agent"
        if self.skip:
            who += f" but {', '.join(self.skip)}"
        return f"{who}, ended more than {show_age(self.older_than)} ago"


def plan(retention: Retention | None, agents: Mapping[str, float | None]) -> list[Pass]:
    """The passes of a prune: each agent with a retention of its own (``agents``: seconds,
    ``None`` for the App's), then every other agent by ``retention`` (``None``: keep them)."""
    own = {name: age for name, age in sorted(agents.items()) if age is not None}
    passes = [Pass(age, agent=name) for name, age in own.items() if age != FOREVER]
    if retention is not None and retention.older_than != FOREVER:
        passes.append(Pass(retention.older_than, skip=tuple(own)))
    return passes


async def prune(
    store: Store,
    step: Pass,
    *,
    now: float,
    batch: int = DEFAULT_BATCH,
    pause: float = 0.0,
    dry_run: bool = False,
    progress: Callable[[Pruned], None] | None = None,
) -> Pruned:
    """Delete (or with ``dry_run`` count) the jobs of ``step`` ended before ``now`` minus its
    age, ``batch`` jobs per transaction with ``pause`` seconds between batches; ``progress``
    is told the running total after each batch."""
    cutoff = now - step.older_than
    if dry_run:
        return await store.prune_ended(
            cutoff, agent=step.agent, skip_agents=step.skip, limit=None, dry_run=True
        )
    total = Pruned()
    while True:
        done = await store.prune_ended(cutoff, agent=step.agent, skip_agents=step.skip, limit=batch)
        total += done
        if progress is not None:
            progress(total)
        if done.jobs < batch:
            return total
        await asyncio.sleep(pause)


class Pruner:
    """A worker's retention: prunes by ``retention`` and the agents' own, every interval."""

    def __init__(
        self,
        store: Store,
        retention: Retention | None,
        agents: Mapping[str, float | None],
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.retention = retention or Retention()
        self.passes = plan(retention, agents)
        self.clock = clock
        self.pruned = Pruned()  # everything this worker deleted so far
        self.turns = 0  # prunes run (one per turn)

    async def run(self) -> None:
        """Prune at its turns until cancelled; a failed prune is logged and tried next turn."""
        rate = 1.0 / self.retention.interval
        while True:
            try:
                await asyncio.sleep(await self.store.take_token(TOKEN, rate, 1.0))
                await self.once()
            except AetherisError as exc:
                log.warning("pruning ended jobs failed (tried again later): %s", exc)
            await asyncio.sleep(self.retention.interval)

    async def once(self) -> Pruned:
        self.turns += 1
        total = Pruned()
        for step in self.passes:
            done = await prune(
                self.store, step, now=self.clock(), batch=self.retention.batch,
                pause=self.retention.pause,
            )  # fmt: skip
            if done.jobs:
                log.info("pruned %d jobs of %s", done.jobs, step.describe())
            total += done
        self.pruned += total
        return total


def start_pruning(
    store: Store,
    retention: Retention | None,
    agents: Mapping[str, AgentDef],
    clock: Callable[[], float],
) -> asyncio.Task[None] | None:
    """A worker's pruning task (cancel it to stop), or ``None`` when nothing is ever pruned."""
    ages = {name: agent.retention for name, agent in agents.items()}
    if not plan(retention, ages):
        return None
    return asyncio.create_task(Pruner(store, retention, ages, clock).run(), name="aetheris-prune")
