"""Retention in the store port (``prune_ended``): every test runs against every store.

An ended job older than the cutoff goes with every row keyed by it, counted table by table
(on the SQL stores, every table that has a ``job_id`` column is checked directly too); jobs
that have not ended stay whatever their age; a dry run deletes nothing; batches are bounded.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from urllib.parse import quote

import psycopg
import pytest

from aetheris.anchor import SigningKey, TrustedKeys
from aetheris.errors import InvalidInput
from aetheris.journal import EventDraft, EventType
from aetheris.store import create_store
from aetheris.store.port import (
    ClaimFilter,
    Commit,
    EffectState,
    Head,
    JobStatus,
    Lease,
    NewJob,
    ParkReason,
    StatusWrite,
    Store,
)
from aetheris.store.pruning import TABLES, tombstone_statement
from tests.store.test_conformance import intent, op
from tests.store.test_webhooks import EVERYTHING, hook

# The tables with rows of a job (webhook_deliveries: "deliveries" in a prune's counts).
SQL_TABLES = {
    "jobs", "events", "effects", "signals", "blobs", "keyed_signals", "correlations",
    "webhook_deliveries",
}  # fmt: skip
ENDS = {
    JobStatus.SUCCEEDED: EventType.JOB_SUCCEEDED,
    JobStatus.FAILED: EventType.JOB_FAILED,
    JobStatus.CANCELLED: EventType.JOB_CANCELLED,
}


async def head(store: Store, job_id: str) -> Head:
    job = await store.get_job(job_id)
    assert job is not None
    return Head(job.event_count, job.head_hash)


async def claimed(store: Store, job_id: str, agent: str = "a", **kw: object) -> Lease:
    new = NewJob(id=job_id, agent=agent, input={"n": 1}, tenant="acme", **kw)  # type: ignore[arg-type]
    await store.create_job(new)
    claim = await store.claim("w1", 30.0, ClaimFilter([agent]))
    assert claim is not None and claim.job.id == job_id
    return claim.lease


async def full_job(
    store: Store, job_id: str, agent: str = "a", end: JobStatus | None = JobStatus.SUCCEEDED
) -> None:
    """A job with rows in every table keyed by jobs: events, a ledger row, a blob, a signal,
    a keyed signal and the key it holds, webhook deliveries and LangGraph checkpoints."""
    lease = await claimed(store, job_id, agent, idempotency_key=f"key-{job_id}")
    blob = (f"{job_id:0<64}"[:64], b"payload")
    first = Commit(
        [op(0)], [intent(0, EffectState.COMMITTED, result=1)], head=await head(store, job_id),
        blobs=[blob], correlate=[("paid", f"order-{job_id}")],
    )  # fmt: skip
    await store.commit(lease, first)
    await store.deliver_keyed("acme", "paid", f"order-{job_id}", {"x": 1}, f"s-{job_id}", None)
    await store.send_signal(job_id, "go", {"y": 2}, f"plain-{job_id}", None)
    thread = quote(f"aetheris-{job_id}", safe="")
    await store.kv_put("langgraph", {f"c/{thread}/ns/1": b"c", f"w/{thread}/ns/1/t/0": b"w"})
    if end is None:
        park = StatusWrite(JobStatus.PARKED, ParkReason.SIGNAL, wake_on="signal:never")
        await store.commit(lease, Commit([op(1)], status=park, head=await head(store, job_id)))
        return
    done = StatusWrite(end, result={"ok": True} if end is JobStatus.SUCCEEDED else None)
    last = EventDraft(ENDS[end], {"result": {"ok": True}} if end is JobStatus.SUCCEEDED else {})
    await store.commit(lease, Commit([last], status=done, head=await head(store, job_id)))


async def rows_of(store: Store, job_id: str) -> dict[str, int]:
    """Rows keyed by ``job_id``, table by table, through the port's reads."""
    job = await store.get_job(job_id)
    thread = quote(f"aetheris-{job_id}", safe="")
    kv = [k for k, _ in await store.kv_scan("langgraph") if f"/{thread}/" in k]
    return {
        "jobs": int(job is not None),
        "events": len(await store.events(job_id)),
        "effects": len(await store.effects(job_id=job_id)),
        "signals": len(await store.signals(job_id, pending=False)),
        "blobs": len(await store.blobs(job_id)),
        "deliveries": len([d for d in await store.deliveries() if d.job_id == job_id]),
        "kv": len(kv),
    }


async def raw_rows(url: str, job_id: str) -> dict[str, int]:
    """On the SQL stores: the rows of ``job_id`` in every table that has a ``job_id`` column
    (found in the catalog, so a table added later is checked too), and its row in jobs."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            tables = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            keyed = [
                t
                for t in tables
                if any(c[1] == "job_id" for c in conn.execute(f"PRAGMA table_info({t})"))
            ]
            counts = {
                t: conn.execute(f"SELECT count(*) FROM {t} WHERE job_id = ?", (job_id,)).fetchone()[
                    0
                ]
                for t in keyed
            }
            counts["jobs"] = conn.execute(
                "SELECT count(*) FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()[0]
            return counts
    if url.startswith("postgresql"):
        async with await psycopg.AsyncConnection.connect(url) as conn:
            cur = await conn.execute(
                "SELECT table_name FROM information_schema.columns WHERE column_name = 'job_id'"
                " AND table_schema = 'public'"
            )
            keyed = [r[0] for r in await cur.fetchall()]
            counts = {}
            for t in keyed:
                cur = await conn.execute(f"SELECT count(*) FROM {t} WHERE job_id = %s", (job_id,))  # type: ignore[arg-type]
                counts[t] = (await cur.fetchone() or (0,))[0]
            cur = await conn.execute("SELECT count(*) FROM jobs WHERE id = %s", (job_id,))
            counts["jobs"] = (await cur.fetchone() or (0,))[0]
            return counts
    return {}


def raw_tables_gone(counts: dict[str, int]) -> dict[str, int]:
    """The tables that still hold rows of a pruned job (its tombstone aside)."""
    return {t: n for t, n in counts.items() if n and t != "pruned_jobs"}


async def test_an_old_ended_job_goes_with_every_row_keyed_by_it(
    store: Store, store_url: str
) -> None:
    await store.create_webhook(hook("h1", events=EVERYTHING))
    await full_job(store, "old")
    await asyncio.sleep(0.05)
    cutoff = time.time()
    await asyncio.sleep(0.05)
    await full_job(store, "recent")
    before = await rows_of(store, "old")
    assert all(before.values()), f"the fixture fills every table: {before}"
    raw = await raw_rows(store_url, "old")
    assert raw == {} or set(raw) == {*SQL_TABLES, "pruned_jobs"}, "a new table keyed by job?"
    assert raw_tables_gone(raw) == {t: n for t, n in raw.items() if t != "pruned_jobs"}
    assert all(raw.get(t, 1) for t in SQL_TABLES), raw

    pruned = await store.prune_ended(cutoff)

    assert pruned.jobs == 1 and pruned.by_agent == {"a": 1}
    for table in before:
        assert pruned.rows[table] == before[table], table
    assert (pruned.rows["keyed_signals"], pruned.rows["correlations"]) == (1, 1)
    assert set(pruned.rows) == set(TABLES)
    assert await rows_of(store, "old") == dict.fromkeys(before, 0)
    assert raw_tables_gone(await raw_rows(store_url, "old")) == {}
    assert all((await rows_of(store, "recent")).values()), "the recent ended job stays"
    # Its idempotency key is free again, and the key it held can be taken by a new job.
    again, created = await store.create_job(
        NewJob(id="new", agent="a", input={"n": 1}, tenant="acme", idempotency_key="key-old")
    )
    assert created and again.id == "new"
    assert (await store.prune_ended(cutoff)).jobs == 0, "nothing left to prune"


async def test_jobs_that_have_not_ended_stay_whatever_their_age(store: Store) -> None:
    await full_job(store, "parked", end=None)
    await store.create_job(NewJob(id="pending", agent="c", input={}, tenant="acme"))
    await claimed(store, "running", agent="b")
    for status in ENDS:
        await full_job(store, f"ended-{status.value}", end=status)
    pruned = await store.prune_ended(time.time() + 3600)
    assert pruned.jobs == 3
    left = {j.id: j.status for j in await store.list_jobs(limit=100)}
    assert left == {
        "parked": JobStatus.PARKED, "pending": JobStatus.PENDING, "running": JobStatus.RUNNING,
    }  # fmt: skip
    assert len(await store.events("parked")) == 4 and await store.signals("parked", pending=False)


async def test_a_long_job_created_before_the_cutoff_that_ended_after_it_stays(
    store: Store,
) -> None:
    """Ended jobs are found by creation time (the index), but the cutoff is on the end time."""
    await full_job(store, "short")  # created and ended before the cutoff
    lease = await claimed(store, "long", agent="b")  # created before the cutoff, still running
    await asyncio.sleep(0.05)
    cutoff = time.time()
    await asyncio.sleep(0.05)
    done = StatusWrite(JobStatus.SUCCEEDED, result=1)
    end = EventDraft(EventType.JOB_SUCCEEDED, {"result": 1})
    await store.commit(lease, Commit([end], status=done, head=await head(store, "long")))
    long = await store.get_job("long")
    assert long is not None and long.created_at < cutoff < long.updated_at
    assert (await store.prune_ended(cutoff, dry_run=True)).by_agent == {"a": 1}
    pruned = await store.prune_ended(cutoff, limit=None)
    assert pruned.by_agent == {"a": 1} and await store.get_job("long") is not None
    assert await store.tombstones(["long"]) == {}
    assert (await store.prune_ended(time.time() + 1)).by_agent == {"b": 1}, "it goes later"


async def test_a_dry_run_counts_and_deletes_nothing(store: Store) -> None:
    await full_job(store, "j1")
    await full_job(store, "j2", agent="b")
    before = {j: await rows_of(store, j) for j in ("j1", "j2")}
    counted = await store.prune_ended(time.time() + 1, dry_run=True, limit=None)
    assert counted.jobs == 2 and counted.by_agent == {"a": 1, "b": 1}
    assert counted.rows["events"] == before["j1"]["events"] + before["j2"]["events"]
    assert {j: await rows_of(store, j) for j in ("j1", "j2")} == before
    assert await store.tombstones(["j1", "j2"]) == {}
    done = await store.prune_ended(time.time() + 1)
    assert done == counted, "the prune deletes what the dry run counted"


async def test_per_agent_and_skipped_agents(store: Store) -> None:
    for i in range(2):
        await full_job(store, f"a{i}", agent="a")
        await full_job(store, f"b{i}", agent="b")
    later = time.time() + 1
    only_b = await store.prune_ended(later, agent="b")
    assert only_b.by_agent == {"b": 2}
    await full_job(store, "b9", agent="b")
    not_b = await store.prune_ended(later, skip_agents=["b"])
    assert not_b.by_agent == {"a": 2}
    assert [j.id for j in await store.list_jobs(limit=10)] == ["b9"]


async def test_batches_are_bounded_and_take_the_oldest_first(store: Store) -> None:
    for i in range(5):
        await full_job(store, f"j{i}")
        await asyncio.sleep(0.002)
    later = time.time() + 1
    first = await store.prune_ended(later, limit=2)
    assert first.jobs == 2
    assert {j.id for j in await store.list_jobs(limit=10)} == {"j2", "j3", "j4"}
    total = first
    while (batch := await store.prune_ended(later, limit=2)).jobs:
        total = total + batch
    assert total.jobs == 5 and await store.list_jobs(limit=10) == []
    with pytest.raises(InvalidInput, match="at least 1"):
        await store.prune_ended(later, limit=0)


async def test_a_child_stays_while_its_parent_has_not_ended(store: Store) -> None:
    await full_job(store, "child-of-live", end=JobStatus.SUCCEEDED)
    await store.create_job(NewJob(id="parent", agent="b", input={}, tenant="acme"))
    await store.create_job(
        NewJob(id="child", agent="a", input={}, tenant="acme", parent_id="parent")
    )
    claim = await store.claim("w1", 30.0, ClaimFilter(["a"]))
    assert claim is not None and claim.job.id == "child"
    done = StatusWrite(JobStatus.SUCCEEDED, result=1)
    end = EventDraft(EventType.JOB_SUCCEEDED, {"result": 1})
    await store.commit(claim.lease, Commit([end], status=done, head=await head(store, "child")))
    pruned = await store.prune_ended(time.time() + 1)
    assert pruned.jobs == 1 and await store.get_job("child") is not None


async def test_a_tombstone_records_the_journal_and_is_signed(store_url: str) -> None:
    key = SigningKey.generate()
    store = create_store(store_url, signer=key)
    await store.open()
    try:
        await full_job(store, "j1")
        job = await store.get_job("j1")
        assert job is not None
        await store.prune_ended(time.time() + 1)
        stone = (await store.tombstones(["j1", "nope"]))["j1"]
        assert (stone.events, stone.head, stone.agent, stone.status) == (
            job.event_count, job.head_hash, "a", "succeeded",
        )  # fmt: skip
        assert stone.anchor is not None and stone.anchor.key_id == key.key_id
        trusted = TrustedKeys.of([key.public])
        assert (
            trusted.check(stone.anchor, tombstone_statement("j1", job.event_count, job.head_hash))
            is None
        )
    finally:
        await store.close()
