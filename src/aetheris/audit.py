"""Verify a job: its journal, the signatures that anchor it, and what is shown of it.

The threat: someone who can write to the database but holds none of the workers' secrets.
They can edit an event and recompute every hash after it, drop a job's last events, reorder
them, edit a job's stored status, result or error, or the effects ledger. :func:`audit`
checks, in this order, and reports the first thing that does not hold (and where):

1. **chain**: every event's hash over its stored bytes links to the one before;
2. **head**: the job row's event count and head hash are the journal's end;
3. **anchor**: the last event carries a signature, by a key the verifier trusts, of the
   job's head (the hash chains everything before it). When it does not, the first event that
   no trusted signature vouches for is reported. Without any trusted key, nothing here is
   checked and the verdict says *not anchored*: the chain alone proves nothing to someone
   who could rewrite it;
4. **witness** (optional, :mod:`aetheris.witness`): the journal still reaches as far as a
   previous verification saw it, through the same event: a cut is caught even where every
   signature left holds;
5. **blobs**: the payloads the events refer to are there and match their hashes;
6. **job**: what the job row shows as fact is what its journal records: agent, input, tenant
   (and parent, deadline) as created; status, result and error as the journal ends it (or no
   end, when it has none); why and on what it is parked;
7. **ledger**: each ledger row is what the journal's intent and outcome events at its position
   make it (tool, arguments' hash, key, state, attempt, result, error), and no row is missing
   or extra.

It never repairs anything. What it cannot see is written in ``docs/contract.md`` ("Audit").
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aetheris.anchor import TrustedKeys
from aetheris.audit_facts import check_job, check_ledger
from aetheris.errors import JobNotFound
from aetheris.journal import GENESIS_HASH, Event, anchor_statement, verify_chain
from aetheris.modelcalls import check_blobs
from aetheris.models import Effect, Job
from aetheris.store.port import Store
from aetheris.store.pruning import Tombstone, tombstone_statement
from aetheris.witness import Seen, Witness

NOT_ANCHORED = (
    "no trusted public key was given (--public-key, AETHERIS_TRUSTED_KEYS), so "
    "only the hash chain was checked, and anyone who can write to the database can rewrite it"
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What :func:`audit` found.

    ``ok``: every check held. ``anchored``: a trusted key's signature vouches for the whole
    journal (``key_id``); when no trusted key was given, ``ok`` can hold while ``anchored``
    does not, and ``note`` says so. On failure, ``check`` names the check that failed,
    ``seq`` the first event found bad (or not vouched for, or missing), ``position`` the
    ledger position at fault, and ``problem`` says what is wrong.
    """

    job_id: str
    ok: bool
    events: int
    head: str
    anchored: bool = False
    key_id: str | None = None
    problem: str | None = None
    seq: int | None = None
    position: int | None = None
    check: str | None = None
    note: str | None = None


def audit(
    job: Job,
    events: Sequence[Event],
    effects: Sequence[Effect],
    blobs: Mapping[str, bytes],
    trusted: TrustedKeys,
    witness: Witness | None = None,
) -> Verdict:
    """Check one job's row, journal, ledger and blobs (see the module's docstring)."""
    chain = verify_chain(job.id, events)
    base = Verdict(job.id, False, chain.events, chain.head)
    if not chain.ok:
        return _fail(base, "chain", chain.seq, chain.problem)
    head = _check_head(job, events)
    if head is not None:
        return _fail(base, "head", *head)
    key_id: str | None = None
    if trusted:
        found = check_anchors(job.id, events, trusted)
        if isinstance(found, tuple):
            return _fail(base, "anchor", *found)
        key_id = found
    for check, found_problem in (
        ("witness", _check_witness(job.id, events, witness)),
        ("blobs", check_blobs(events, blobs)),
        ("job", check_job(job, events)),
    ):
        if found_problem is not None:
            at, problem = found_problem
            return _fail(base, check, at if at >= 0 else None, problem)
    ledger = check_ledger(events, effects)
    if ledger is not None:
        position, seq, problem = ledger
        return _with(_fail(base, "ledger", seq, problem), position=position)
    anchored = key_id is not None
    return _with(
        base, ok=True, anchored=anchored, key_id=key_id, note=None if anchored else NOT_ANCHORED
    )


def check_anchors(
    job_id: str, events: Sequence[Event], trusted: TrustedKeys
) -> str | tuple[int, str]:
    """The id of the trusted key that vouches for the whole journal; else the first event no
    trusted signature vouches for, and why.

    A valid signature on event ``n`` vouches for events ``0..n`` (its hash chains them), so
    only the last event's is checked when it holds; otherwise the journal is walked back to
    the last event whose signature holds.
    """
    if not events:
        return 0, "the journal is empty: nothing vouches for the job"
    why: str | None = None
    for event in reversed(events):
        if event.anchor is None:
            continue
        statement = anchor_statement(job_id, event.seq, event.hash)
        problem = trusted.check(event.anchor, statement)
        if problem is None:
            if event.seq == len(events) - 1:
                return event.anchor.key_id
            return event.seq + 1, why or _unsigned_tail(events, event.seq + 1)
        why = f"the anchor of seq {event.seq}: {problem}"
    if why is None:
        return 0, (
            "no event carries an anchor: the journal was written without a signing key "
            "(AETHERIS_SIGNING_KEY), or its signatures were removed"
        )
    return 0, f"no trusted signature vouches for any event; {why}"


def _unsigned_tail(events: Sequence[Event], first: int) -> str:
    last = len(events) - 1
    return (
        f"the last event (seq {last}) carries no anchor, nor does any after seq {first - 1}: "
        "the journal was cut short, or written on by a process without the signing key"
    )


def _check_head(job: Job, events: Sequence[Event]) -> tuple[int, str] | None:
    count = len(events)
    if job.event_count == count and job.head_hash == (events[-1].hash if events else GENESIS_HASH):
        return None
    if job.event_count < count:
        return job.event_count, (
            f"the job's row says its journal has {job.event_count} events, the journal has "
            f"{count}: its head was moved back"
        )
    if job.event_count > count:
        return count, (
            f"the job's row says its journal has {job.event_count} events, only {count} are "
            "there: events were removed"
        )
    return count - 1, "the job's head hash does not match the last event"


def _check_witness(
    job_id: str, events: Sequence[Event], witness: Witness | None
) -> tuple[int, str] | None:
    seen = witness.seen(job_id) if witness is not None else None
    if seen is None or seen.events == 0:
        return None
    if len(events) < seen.events:
        return len(events), (
            f"the journal has {len(events)} events; a verification witnessed {seen.events}: "
            "it was cut short"
        )
    if events[seen.events - 1].hash != seen.head:
        return seen.events - 1, (
            f"event {seen.events - 1} is not the one a verification witnessed there: the "
            "journal was rewritten up to it"
        )
    return None


def _fail(base: Verdict, check: str, seq: int | None, problem: str | None) -> Verdict:
    return _with(base, ok=False, check=check, seq=seq, problem=problem)


def _with(verdict: Verdict, **changes: Any) -> Verdict:
    return dataclasses.replace(verdict, **changes)


async def verify_job(
    store: Store, job_id: str, trusted: TrustedKeys, witness: Witness | None = None
) -> Verdict:
    """Read a job, its journal, ledger and blobs from ``store`` and :func:`audit` them."""
    job = await store.get_job(job_id)
    if job is None:
        raise JobNotFound(job_id)
    events = await store.events(job_id)
    effects = await store.effects(job_id=job_id)
    blobs = await store.blobs(job_id)
    return audit(job, events, effects, blobs, trusted, witness)


async def job_ids(store: Store, *, tenant: str | None = None, page: int = 500) -> list[str]:
    """Every job's id (of ``tenant``, when given), newest first."""
    ids: list[str] = []
    after: tuple[float, str] | None = None
    while True:
        found = await store.list_jobs(limit=page, tenant=tenant, after=after)
        ids.extend(j.id for j in found)
        if len(found) < page:
            return ids
        after = (found[-1].created_at, found[-1].id)


__all__ = ["NOT_ANCHORED", "Verdict", "audit", "check_anchors", "job_ids", "verify_job"]


_GONE = "a verification witnessed this job with {} events; it is gone"


def gone(
    witness: Witness,
    present: set[str],
    tombstones: Mapping[str, Tombstone],
    trusted: TrustedKeys,
) -> list[Verdict]:
    """Verdicts on the jobs a verification witnessed that are no longer there: a job pruned
    (its tombstone holds the journal as witnessed, or longer, and, when keys are trusted, a
    trusted key signed it) is ok, with a note; any other is a deletion."""
    verdicts = []
    for job_id, seen in sorted(witness.jobs.items()):
        if job_id in present:
            continue
        stone = tombstones.get(job_id)
        problem = _GONE.format(seen.events) if stone is None else _pruned(stone, seen, trusted)
        if problem is not None:
            verdicts.append(Verdict(job_id, False, 0, "", check="witness", seq=0, problem=problem))
            continue
        assert stone is not None
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stone.pruned_at))
        anchored = stone.anchor is not None and bool(trusted)
        note = f"pruned {when} (ended {stone.status}, {stone.events} events)"
        key = stone.anchor.key_id if anchored and stone.anchor else None
        verdicts.append(Verdict(job_id, True, stone.events, stone.head, anchored, key, note=note))
    return verdicts


def _pruned(stone: Tombstone, seen: Seen, trusted: TrustedKeys) -> str | None:
    """Why ``stone`` does not account for the journal a verification saw (``None``: it does)."""
    if stone.events < seen.events or (stone.events == seen.events and stone.head != seen.head):
        return (
            f"the job is gone; its tombstone says {stone.events} events, head {stone.head}, "
            f"but a verification witnessed {seen.events} events, head {seen.head}"
        )
    if not trusted:
        return None
    if stone.anchor is None:
        return "the job is gone, and its tombstone is signed by no key (keys are trusted)"
    why = trusted.check(stone.anchor, tombstone_statement(stone.job_id, stone.events, stone.head))
    return None if why is None else f"the job is gone, and its tombstone is {why}"
