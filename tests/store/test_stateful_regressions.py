"""Store defects the stateful machine found (``test_stateful.py``), pinned as plain tests.

Each test is the smallest sequence that showed one defect, on every store; each failed until
the store was fixed. While a defect is open, ``OPEN_DEFECTS`` in ``test_stateful.py`` names it
so that the machine steers around it (and keeps hunting for others) until it is fixed.
"""

from __future__ import annotations

import pytest

from aetheris.errors import Conflict
from aetheris.journal import EventDraft, EventType
from aetheris.store.port import (
    Claim,
    ClaimFilter,
    Commit,
    Control,
    EffectClass,
    EffectState,
    EffectWrite,
    Guard,
    Head,
    JobStatus,
    NewJob,
    ParkReason,
    StatusWrite,
    Store,
    signal_wake,
)

ALL = ClaimFilter(["a"])


async def running(store: Store) -> Claim:
    await store.create_job(NewJob(id="j1", agent="a", input={}))
    claim = await store.claim("w", 30.0, ALL)
    assert claim is not None
    return claim


def head(claim: Claim) -> Head:
    return Head(claim.job.event_count, claim.job.head_hash)


def ledger(state: EffectState, expect: EffectState | None = None) -> EffectWrite:
    return EffectWrite(1, "pay", EffectClass.AT_MOST_ONCE, "h", "j1:1", state, expect=expect)


async def test_a_commit_receiving_one_signal_twice_is_refused_whole(store: Store) -> None:
    """Memory accepted it (both receipts checked before either applies); SQL stores refuse."""
    claim = await running(store)
    signal, _ = await store.send_signal("j1", "go", None, "s1", None)
    twice = Commit(consume=[(signal.seq, 0), (signal.seq, 1)], head=head(claim))
    with pytest.raises(Conflict):
        await store.commit(claim.lease, twice)
    assert [s.consumed_position for s in await store.signals("j1", pending=False)] == [None]


@pytest.mark.parametrize(
    "second",
    [
        pytest.param(ledger(EffectState.COMMITTED), id="insert-twice"),
        pytest.param(ledger(EffectState.COMMITTED, EffectState.INTENT), id="insert-then-update"),
    ],
)
@pytest.mark.parametrize("with_head", [True, False], ids=["head", "no-head"])
async def test_a_commit_writing_one_ledger_row_twice_is_refused_whole(
    store: Store, second: EffectWrite, with_head: bool
) -> None:
    """Today each store (and PostgreSQL's two commit paths) answers differently.

    Memory checks every write against the rows before the commit, then applies them in turn:
    it accepts an insert twice (the second overwrites). SQLite and PostgreSQL without a head
    apply them in turn: they accept an insert then an update. PostgreSQL with a head raises a
    bare StoreError for an insert twice (ON CONFLICT cannot touch a row twice).
    """
    claim = await running(store)
    commit = Commit(
        effects=[ledger(EffectState.INTENT), second], head=head(claim) if with_head else None
    )
    with pytest.raises(Conflict):
        await store.commit(claim.lease, commit)
    assert await store.effects() == []


async def test_a_refused_apply_writes_nothing(store: Store) -> None:
    """Memory bumped the epoch (fencing the holder) before it found the signal received."""
    claim = await running(store)
    signal, _ = await store.send_signal("j1", "go", None, "s1", None)
    await store.commit(claim.lease, Commit(consume=[(signal.seq, 0)], head=head(claim)))
    received_again = Commit([EventDraft(EventType.JOB_RESUMED, {})], consume=[(signal.seq, 1)])
    with pytest.raises(Conflict):
        await store.apply("j1", received_again, Guard(frozenset({JobStatus.RUNNING})))
    job = await store.get_job("j1")
    assert job is not None and job.lease_epoch == claim.lease.epoch and job.lease_owner == "w"
    beat = await store.heartbeat([claim.lease], 30.0)
    assert beat.lost == set()


@pytest.mark.parametrize("held", [True, False], ids=["running", "not-running"])
async def test_a_pause_does_not_erase_a_requested_cancel(store: Store, held: bool) -> None:
    """Every store lets a pause replace a requested cancel: the cancel is lost for good.

    Running: the flag becomes ``pause``. Not running (a parked job woken by the cancel, now
    pending with the flag): the pause parks it and clears the flag, and ``resume`` runs it on.
    A cancel is the stronger request; the pause is refused and the cancel stays.
    """
    claim = await running(store)
    if not held:
        parked = Commit([EventDraft(EventType.JOB_PARKED, {})], status=_parked(), head=head(claim))
        await store.commit(claim.lease, parked)
    await store.control("j1", Control.CANCEL)
    with pytest.raises(Conflict):
        await store.control("j1", Control.PAUSE)
    job = await store.get_job("j1")
    assert job is not None and job.control is Control.CANCEL


def _parked() -> StatusWrite:
    return StatusWrite(JobStatus.PARKED, ParkReason.SIGNAL, wake_on=signal_wake("go"))
