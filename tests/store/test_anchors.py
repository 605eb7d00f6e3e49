"""Anchors on every store: a store made with a signing key signs the head of every write that
appends events (creation, claim, commit, apply, control, children), on the write's last event,
and the signature is read back with the event; the public keys in use are recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aetheris.anchor import SigningKey, TrustedKeys
from aetheris.audit import check_anchors
from aetheris.journal import Event, EventDraft, EventType, anchor_statement
from aetheris.store import create_store
from aetheris.store.port import (
    ClaimFilter,
    Commit,
    Control,
    Guard,
    Head,
    JobStatus,
    NewJob,
    ParkReason,
    StatusWrite,
    Store,
)

KEY = SigningKey.generate()


@pytest.fixture
async def signed(store_url: str) -> AsyncIterator[Store]:
    """The store under test, made with a signing key."""
    opened = create_store(store_url, signer=KEY)
    await opened.open()
    yield opened
    await opened.close()


def vouched(job_id: str, event: Event) -> bool:
    assert event.anchor is not None, f"seq {event.seq} carries no anchor"
    statement = anchor_statement(job_id, event.seq, event.hash)
    return TrustedKeys.of([KEY.public]).check(event.anchor, statement) is None


async def test_each_write_anchors_its_last_event(signed: Store) -> None:
    await signed.create_job(NewJob("j1", "a", {"n": 1}))
    claim = await signed.claim("w", 30.0, ClaimFilter(["a"]))
    assert claim is not None
    head = Head(claim.job.event_count, claim.job.head_hash)
    op = {"kind": "step", "name": "s", "ordinal": 1, "args_hash": "h", "result": 1}
    parked = {"reason": "signal", "detail": None}
    await signed.commit(
        claim.lease,
        Commit(
            [EventDraft(EventType.OP, op, 0), EventDraft(EventType.JOB_PARKED, parked)],
            status=StatusWrite(JobStatus.PARKED, park_reason=ParkReason.SIGNAL, wake_on="x"),
            head=head,
        ),
    )
    await signed.control("j1", Control.CANCEL, by="ops")
    events = await signed.events("j1")
    assert [e.type for e in events] == [
        EventType.JOB_CREATED,
        EventType.JOB_CLAIMED,
        EventType.OP,
        EventType.JOB_PARKED,
        EventType.CONTROL,
    ]
    # one signature a write: on its last event, none on the others
    assert [e.anchor is not None for e in events] == [True, True, False, True, True]
    assert all(vouched("j1", e) for e in events if e.anchor is not None)
    assert {e.anchor.key_id for e in events if e.anchor} == {KEY.key_id}
    assert check_anchors("j1", events, TrustedKeys.of([KEY.public])) == KEY.key_id


async def test_apply_and_children_are_anchored(signed: Store) -> None:
    await signed.create_job(NewJob("p", "a", {}))
    claim = await signed.claim("w", 30.0, ClaimFilter(["a"]))
    assert claim is not None
    head = Head(claim.job.event_count, claim.job.head_hash)
    child = NewJob("c", "a", {}, parent_id="p")
    await signed.commit(claim.lease, Commit(create=[child], head=head))
    resumed = EventDraft(EventType.JOB_RESUMED, {"by": "ops"})
    running = Guard(frozenset({JobStatus.RUNNING}))
    await signed.apply("p", Commit([resumed], status=StatusWrite(JobStatus.PENDING)), running)
    for job_id in ("p", "c"):
        events = await signed.events(job_id)
        assert events[-1].anchor is not None and vouched(job_id, events[-1])
    created = (await signed.events("c"))[0]
    assert created.data["parent_id"] == "p" and created.data["tenant"] == "default"


async def test_a_store_without_a_key_writes_no_anchor(store: Store) -> None:
    await store.create_job(NewJob("j1", "a", {}))
    events = await store.events("j1")
    assert events[0].anchor is None
    assert isinstance(check_anchors("j1", events, TrustedKeys.of([KEY.public])), tuple)


async def test_signing_keys_are_recorded_once(store: Store) -> None:
    assert await store.signing_keys() == []
    await store.record_signing_key(KEY.key_id, KEY.public.text)
    await store.record_signing_key(KEY.key_id, KEY.public.text)
    other = SigningKey.generate()
    await store.record_signing_key(other.key_id, other.public.text)
    found = await store.signing_keys()
    assert {k.key_id: k.public_key for k in found} == {
        KEY.key_id: KEY.public.text,
        other.key_id: other.public.text,
    }
    assert found[0].first_seen <= found[1].first_seen
