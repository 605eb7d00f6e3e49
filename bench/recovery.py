"""W3-lite: recovery after ``kill -9``. How long a killed worker's job waits for a new owner.

Worker process A runs one job whose steps each sleep 50 ms. Once A has recorded some steps,
worker process B is started and left to become idle (its start-up is not measured). Then A gets
SIGKILL; **recovery s** runs from the kill (``time.time()`` just before ``os.kill``) to B's
``job_claimed`` event for the job (its ``at``: B's wall clock). The lease TTL is the default 30 s,
so a recovery that waited for the lease would show it. SQLite workers see a dead worker's
released ``flock``; PostgreSQL workers see its released advisory lock, free for ``reap_grace``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from aetheris import App
from aetheris.journal import Event
from bench import core_app
from bench.common import (
    Case,
    Detail,
    Process,
    Record,
    claims,
    expect,
    spawn_worker,
    stop_workers,
    wait_for_log,
)
from bench.databases import Database

W3_STEPS = 200
W3_NAP = 0.05
W3_STEPS_BEFORE_KILL = 10
W3_SETTLE = 0.5
W3_TIMEOUT = 90.0
SERVING = " serving "


async def w3_run(case: Case, db: Database, workdir: Path, detail: Detail) -> Record:
    async with core_app.build_app(db.url) as app:
        handle = await app.start("w3_naps", {"steps": W3_STEPS, "seconds": W3_NAP})
        doomed = await spawn_worker(db.url, workdir, "worker-killed", 1)
        procs: list[Process] = [doomed]
        try:
            await _wait_events(app, handle.job_id, 2 + W3_STEPS_BEFORE_KILL, doomed)
            fresh = await spawn_worker(db.url, workdir, "worker-fresh", 1, "--grace", "0")
            procs.append(fresh)
            await wait_for_log(workdir / "worker-fresh.log", SERVING, fresh, W3_TIMEOUT)
            await asyncio.sleep(W3_SETTLE)
            before = await app.get_job(handle.job_id)
            killed_at = time.time()
            os.kill(doomed.pid, signal.SIGKILL)
            await doomed.wait()
            detail(0, None)
            claim = await _wait_second_claim(app, handle.job_id, fresh)
        finally:
            exit_codes = await stop_workers(procs)
    first, second = claim
    expect(f":{doomed.pid}:" in first.data["owner"], f"first claim by {first.data['owner']}")
    expect(f":{fresh.pid}:" in second.data["owner"], f"second claim by {second.data['owner']}")
    expect(second.data["recovered_from"] == first.data["owner"], "not a recovery of A's job")
    lease_ends = before.lease_expires_at
    expect(lease_ends is not None, "the job had no lease when A was killed")
    return {
        "recovery_s": second.at - killed_at,
        "lease_left_at_kill_s": float(lease_ends or 0.0) - killed_at,
        "steps_before_kill": before.event_count - 2,
        "reap_grace_s": case.params.get("reap_grace"),
        "worker_exit_codes": exit_codes,
    }


async def _wait_events(app: App, job_id: str, count: int, worker: Process) -> None:
    deadline = time.monotonic() + W3_TIMEOUT
    while (await app.get_job(job_id)).event_count < count:
        expect(worker.returncode is None, f"worker exited with {worker.returncode}")
        expect(time.monotonic() < deadline, f"job {job_id} has not {count} events")
        await asyncio.sleep(0.02)


async def _wait_second_claim(app: App, job_id: str, fresh: Process) -> tuple[Event, Event]:
    store = await app.open_store()
    deadline = time.monotonic() + W3_TIMEOUT
    while True:
        found = claims(await store.events(job_id))
        if len(found) >= 2:
            expect(len(found) == 2, f"{len(found)} claims of job {job_id}")
            return found[0], found[1]
        expect(fresh.returncode is None, f"fresh worker exited with {fresh.returncode}")
        expect(time.monotonic() < deadline, f"job {job_id} not recovered in {W3_TIMEOUT}s")
        await asyncio.sleep(0.02)
