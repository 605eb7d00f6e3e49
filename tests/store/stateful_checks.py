"""What the stateful store test checks after every step, on one snapshot of the store.

The store must hold exactly what the model says (job fields, journals, ledger rows, inboxes,
the next wake-up), lease epochs never go back, every journal is gap-free and verifies, and
no job sleeps on something that is already there (DESIGN.md, invariant 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aetheris.journal import GENESIS_HASH, Event, verify_chain
from aetheris.store.port import Control, Effect, Head, Job, JobStatus, Signal, Store
from tests.store.store_model import VIEW_FIELDS, Model, MSignal


@dataclass
class Snapshot:
    """Everything the store holds, read through the port once after each step."""

    jobs: dict[str, Job]
    events: dict[str, list[Event]]
    signals: dict[str, list[Signal]]
    pending: dict[str, list[Signal]]
    effects: list[Effect]
    next_wake: float | None


async def read(store: Store) -> Snapshot:
    jobs = {j.id: j for j in await store.list_jobs(limit=10_000)}
    inboxes = {job_id: await store.signals(job_id, pending=False) for job_id in jobs}
    # An empty inbox has nothing pending: ask only where there is something to filter.
    pending = {job_id: await store.signals(job_id) for job_id in jobs if inboxes[job_id]}
    return Snapshot(
        jobs,
        {job_id: await store.events(job_id) for job_id in jobs},
        inboxes,
        {job_id: pending.get(job_id, []) for job_id in jobs},
        await store.effects(),
        await store.next_wake(),
    )


def check_jobs(snapshot: Snapshot, model: Model, epochs: dict[str, int]) -> None:
    """Every field the port defines, and lease epochs that never go back (``epochs`` moves)."""
    assert set(snapshot.jobs) == set(model.jobs)
    for job_id, job in snapshot.jobs.items():
        assert job_view(job) == model.jobs[job_id].view(), job_id
        assert job.lease_epoch >= epochs.get(job_id, 0), f"{job_id}: epoch went back"
        epochs[job_id] = job.lease_epoch


def check_journals(snapshot: Snapshot, model: Model) -> dict[str, Head]:
    """Gap-free, hash-chained journals ending at the job's head, with the model's events.

    Returns the heads, verified: what a lease holder knows when it commits.
    """
    heads: dict[str, Head] = {}
    for job_id, events in snapshot.events.items():
        report = verify_chain(job_id, events)
        assert report.ok, f"{job_id}: {report.problem} at seq {report.seq}"
        job = snapshot.jobs[job_id]
        assert [e.seq for e in events] == list(range(job.event_count))
        assert job.head_hash == (events[-1].hash if events else GENESIS_HASH)
        assert [e.type for e in events] == model.jobs[job_id].journal, job_id
        heads[job_id] = Head(job.event_count, job.head_hash)
    return heads


def check_ledger(snapshot: Snapshot, model: Model) -> None:
    found = {(e.job_id, e.position): effect_view(e) for e in snapshot.effects}
    assert found == {key: vars(row) for key, row in model.effects.items()}


def check_inboxes(snapshot: Snapshot, model: Model) -> None:
    """Every signal in order, and the pending ones as the port's own query returns them."""
    for job_id, inbox in snapshot.signals.items():
        expected = [model_signal_view(s) for s in model.signals[job_id]]
        assert [signal_view(s) for s in inbox] == expected, job_id
        pending = [model_signal_view(s) for s in model.pending_signals(job_id)]
        assert [signal_view(s) for s in snapshot.pending[job_id]] == pending, job_id


def check_next_wake(snapshot: Snapshot, model: Model) -> None:
    parked = [j.wake_at for j in model.jobs.values() if j.status is JobStatus.PARKED]
    assert snapshot.next_wake == min((at for at in parked if at is not None), default=None)


def check_no_sleeping_on_what_is_there(snapshot: Snapshot) -> None:
    """DESIGN invariant 5, on the store's own rows: no job parked while what it waits is there.

    A pending signal of the awaited name, an ended awaited job, a cancel requested of it.
    """
    for job in snapshot.jobs.values():
        if job.status is not JobStatus.PARKED:
            continue
        kind, _, name = (job.wake_on or "").partition(":")
        if kind == "signal":
            waiting = [s.seq for s in snapshot.pending[job.id] if s.name == name]
            assert not waiting, f"{job.id} sleeps on signals {waiting} already in its inbox"
        other = snapshot.jobs.get(name)
        if kind == "job" and other is not None:
            assert not other.status.terminal, f"{job.id} sleeps on {other.id}, which has ended"
        assert job.control is not Control.CANCEL, f"{job.id} sleeps with a cancel requested"


def job_view(job: Job) -> dict[str, Any]:
    return {name: getattr(job, name) for name in VIEW_FIELDS} | {"event_count": job.event_count}


def effect_view(effect: Effect) -> dict[str, Any]:
    names = ("tool", "effect", "args_hash", "idempotency_key", "state", "result", "error")
    return {name: getattr(effect, name) for name in names} | {"attempt": effect.attempt}


def signal_view(signal: Signal) -> tuple[Any, ...]:
    return (signal.seq, signal.name, signal.signal_id, signal.payload, signal.consumed_position)


def model_signal_view(signal: MSignal) -> tuple[Any, ...]:
    return (signal.seq, signal.name, signal.signal_id, signal.payload, signal.consumed_position)
