"""``aetheris db prune`` and ``verify --all --witness`` after it, as a user runs them; and a
real worker process that prunes while it runs jobs. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import psycopg

import aetheris
from aetheris.anchor import SigningKey
from aetheris.store.port import JobStatus, NewJob, Store
from tests.processes import ROOT, start_worker, stop

APP = """
import asyncio
import aetheris
from aetheris.retention import Retention

app = aetheris.App(retention=RETENTION)

async def _slow(n: int) -> int:
    with open("ran.log", "a") as log:
        log.write(f"{n}\\n")
    await asyncio.sleep(0.05)
    return n

@app.agent
async def work(ctx: aetheris.Context, n: int) -> int:
    return await ctx.step("slow", _slow, n)

@app.agent
async def waiting(ctx: aetheris.Context) -> object:
    return await ctx.wait_for_signal("go")
"""


def cli(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ, "AETHERIS_DATABASE_URL": url, "NO_COLOR": "1", "COLUMNS": "200",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), **env,
    }  # fmt: skip
    command = [sys.executable, "-m", "aetheris", *args]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60)


async def run_jobs(url: str, key: SigningKey, count: int) -> str:
    """``count`` jobs of ``work`` run to the end, and one ``waiting`` job parked (its id)."""
    app = aetheris.App(url, signing_key=key, poll_interval=0.05)

    @app.agent
    async def work(ctx: aetheris.Context, n: int) -> int:
        return await ctx.step("slow", lambda: n)

    @app.agent
    async def waiting(ctx: aetheris.Context) -> object:
        return await ctx.wait_for_signal("go")

    handles = [await app.start("work", {"n": i}) for i in range(count)]
    parked = await app.start("waiting", {})
    stop_worker = asyncio.Event()
    worker = asyncio.create_task(app.run_worker(stop=stop_worker))
    for h in handles:
        await h.result(timeout=20)
    for _ in range(400):
        if (await app.get_job(parked.job_id)).status is JobStatus.PARKED:
            break
        await asyncio.sleep(0.05)
    stop_worker.set()
    await worker
    await app.close()
    return parked.job_id


async def raw(url: str, *statements: tuple[str, tuple[object, ...]]) -> None:
    """Write to the database behind Aetheris' back (what an intruder could do)."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            for sql, args in statements:
                conn.execute(sql, args)
        return
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for sql, args in statements:
            await conn.execute(sql.replace("?", "%s"), args)  # type: ignore[arg-type]


def test_db_prune_then_verify_all_with_a_witness(durable_url: str, tmp_path: Path) -> None:
    key = SigningKey.generate()
    signing = {"AETHERIS_SIGNING_KEY": str(tmp_path / "key.pem")}
    (tmp_path / "key.pem").write_bytes(key.pem())
    trusted = {"AETHERIS_TRUSTED_KEYS": key.public.text}
    parked = asyncio.run(run_jobs(durable_url, key, 4))
    witness = str(tmp_path / "witness.json")
    first = cli(durable_url, "verify", "--all", "--witness", witness, **trusted)
    assert first.returncode == 0, first.stderr
    time.sleep(1.1)

    dry = cli(durable_url, "db", "prune", "--older-than", "1s", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    counted = json.loads(dry.stdout)
    assert counted["dry_run"] and counted["jobs"] == 4 and counted["by_agent"] == {"work": 4}
    assert counted["rows"]["events"] >= 4 * 4 and counted["rows"]["jobs"] == 4
    listed = json.loads(cli(durable_url, "jobs", "list", "--json").stdout)
    assert len(listed) == 5, "a dry run deletes nothing"

    done = cli(durable_url, "db", "prune", "--older-than", "1s", "--batch", "3", **signing)
    assert done.returncode == 0, done.stderr
    assert "deleted 4 jobs of every agent, ended more than 1s ago" in done.stdout
    assert re.search(rf"events\W+{counted['rows']['events']}\b", done.stdout), done.stdout
    assert "pruned 3 jobs" in done.stderr and "pruned 4 jobs" in done.stderr
    left = json.loads(cli(durable_url, "jobs", "list", "--json").stdout)
    assert [j["id"] for j in left] == [parked]

    after = cli(durable_url, "verify", "--all", "--witness", witness, **trusted)
    assert after.returncode == 0, after.stdout + after.stderr
    assert after.stdout.count("ok: pruned") == 4 and "tombstone signed by key" in after.stdout
    assert set(json.loads(Path(witness).read_text())["jobs"]) == {parked}, "pruned: forgotten"

    # A job deleted behind Aetheris' back is still caught, and so is a forged tombstone.
    asyncio.run(raw(durable_url, ("DELETE FROM events WHERE job_id = ?", (parked,)),
                    ("DELETE FROM jobs WHERE id = ?", (parked,))))  # fmt: skip
    deleted = cli(durable_url, "verify", "--all", "--witness", witness, **trusted)
    assert deleted.returncode == 1 and "it is gone" in deleted.stderr
    forged = (parked, "default", "waiting", "succeeded", 9, "ab" * 32, 1.0, 2.0)
    asyncio.run(raw(durable_url, (
        "INSERT INTO pruned_jobs (job_id, tenant, agent, status, events, head, ended_at, "
        "pruned_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", forged,
    )))  # fmt: skip
    unsigned = cli(durable_url, "verify", "--all", "--witness", witness, **trusted)
    assert unsigned.returncode == 1 and "signed by no key" in unsigned.stderr

    bad = cli(durable_url, "db", "prune", "--older-than", "3x")
    assert bad.returncode == 2 and "'3x' is not a duration" in bad.stderr
    never = cli(durable_url, "db", "prune", "--older-than", "forever")
    assert never.returncode == 2 and "nothing to prune" in never.stderr


def test_a_worker_process_prunes_while_it_runs_jobs(durable_url: str, tmp_path: Path) -> None:
    retention = "Retention(older_than=1.0, interval=0.3, batch=5, pause=0.05)"
    (tmp_path / "prune_app.py").write_text(textwrap.dedent(APP).replace("RETENTION", retention))
    worker = start_worker("prune_app:app", durable_url, tmp_path, cwd=tmp_path)
    try:
        ids, parked, pending, started_last = asyncio.run(_feed(durable_url, 40))
        ran = (tmp_path / "ran.log").read_text().split()
        assert sorted(map(int, ran)) == list(range(40)), "each job ran once"

        async def settle() -> tuple[set[str], dict[str, object]]:
            app = aetheris.App(durable_url)
            store = await app.open_store()
            deadline = time.monotonic() + 30
            while {j.id for j in await store.list_jobs(limit=100)} != {parked, pending}:
                assert time.monotonic() < deadline, "the worker did not prune them all"
                await asyncio.sleep(0.2)
            left = {j.id for j in await store.list_jobs(limit=100)}
            stones = await store.tombstones(ids)
            await app.close()
            return left, dict(stones)

        left, stones = asyncio.run(settle())
        assert left == {parked, pending}, "parked and pending jobs stay"
        assert set(stones) == set(ids)
        assert all(s.status == "succeeded" for s in stones.values())  # type: ignore[attr-defined]
        first_pruned = min(s.pruned_at for s in stones.values())  # type: ignore[attr-defined]
        assert first_pruned < started_last, "it pruned while jobs still came and ran"
        last_ran = max(s.ended_at for s in stones.values())  # type: ignore[attr-defined]
        assert first_pruned < last_ran, "jobs ran after the first prune"
    finally:
        stop(worker)
    log = "".join(p.read_text() for p in tmp_path.glob("worker-*.log"))
    assert "Traceback" not in log and "pruning ended jobs failed" not in log, log


async def _feed(url: str, count: int) -> tuple[list[str], str, str, float]:
    """Start ``count`` jobs in two halves, the second once the worker has pruned some of the
    first (so it prunes while jobs come and run), and wait for all to end; a parked job and one
    of an agent no worker serves (pending for good). Their ids, and when the last started."""
    app = aetheris.App(url)
    parked = await app.start("waiting", {})
    store = await app.open_store()
    pending, _ = await store.create_job(NewJob(id="pending-1", agent="nobody", input={}))
    ids: list[str] = []
    for i in range(count):
        ids.append((await app.start("work", {"n": i})).job_id)
        await asyncio.sleep(0.05)
        if i == count // 2:
            await _until(lambda: _any_pruned(store, ids), "no job pruned while jobs ran")
    started_last = time.time()

    async def all_ended() -> bool:
        jobs = {j.id: j.status for j in await store.list_jobs(limit=200)}
        return all(jobs.get(i, JobStatus.SUCCEEDED) is JobStatus.SUCCEEDED for i in ids)

    await _until(all_ended, "the jobs did not all end")
    await app.close()
    return ids, parked.job_id, pending.id, started_last


async def _any_pruned(store: Store, ids: list[str]) -> bool:
    return bool(await store.tombstones(ids))


async def _until(check: Callable[[], Awaitable[bool]], problem: str) -> None:
    deadline = time.monotonic() + 60
    while not await check():
        assert time.monotonic() < deadline, problem
        await asyncio.sleep(0.1)


def test_a_worker_started_with_retention_prunes_and_db_prune_reads_the_toml(
    sqlite_url: str, tmp_path: Path
) -> None:
    parked = asyncio.run(run_jobs(sqlite_url, SigningKey.generate(), 3))
    time.sleep(1.1)
    (tmp_path / "aetheris.toml").write_text('[retention]\nolder_than = "1s"\n')
    environment = {
        **os.environ, "AETHERIS_DATABASE_URL": sqlite_url, "NO_COLOR": "1",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "src"), str(ROOT)]),
    }  # fmt: skip
    command = [sys.executable, "-m", "aetheris", "db", "prune", "--dry-run", "--json"]
    dry = subprocess.run(command, env=environment, cwd=tmp_path, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["older_than"] == "1s" and json.loads(dry.stdout)["jobs"] == 3
    (tmp_path / "aetheris.toml").unlink()
    (tmp_path / "prune_app.py").write_text(textwrap.dedent(APP).replace("RETENTION", "None"))
    worker = start_worker(
        "prune_app:app", sqlite_url, tmp_path, cwd=tmp_path, env={"AETHERIS_RETENTION": "1s"}
    )
    try:

        async def left() -> set[str]:
            app = aetheris.App(sqlite_url)
            store = await app.open_store()
            deadline = time.monotonic() + 30
            while len(ids := {j.id for j in await store.list_jobs(limit=10)}) > 1:
                assert time.monotonic() < deadline, "the worker did not prune"
                await asyncio.sleep(0.2)
            await app.close()
            return ids

        assert asyncio.run(left()) == {parked}, "the ended jobs went, the parked one stayed"
    finally:
        stop(worker)
