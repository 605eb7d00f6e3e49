"""Redeploys with real worker processes: the old deploy's workers are killed (kill -9) or kept,
the new deploy's are started with ``aetheris worker --on-new-code ...`` (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aetheris import App, JobStatus
from aetheris.journal import EventType

from .helpers import wait_for

MODULE = """
import os
import aetheris

app = aetheris.App(lease_ttl=2.0, poll_interval=0.05)


@app.tool(effect="at_most_once")
async def pay(amount: int) -> str:
    with open(os.environ["VERSIONS_WORLD"], "a") as world:
        world.write(f"pay {{amount}}\\n")
    return "paid"


async def quote(amount: int) -> int:
    return amount * 100


@app.agent(name="refund")
async def refund(ctx: aetheris.Context, amount: int) -> dict:
    cents = await ctx.step("quote", quote, amount)
{body}
    await ctx.approval("refund", {{"cents": cents}})
    await pay(amount)
    return {{"branch": branch, "cents": cents}}
"""
BODIES = {
    "deploy_v1": '    branch = "old"',
    "deploy_v2": """\
    branch = "old"
    if ctx.patched("risk-check"):
        await ctx.step("risk", quote, amount)
        branch = "new"
""",
    "deploy_v2_unpatched": """\
    await ctx.step("risk", quote, amount)
    branch = "new"
""",
}


class Deploys:
    """The app's modules as deployed (one per version) and the worker processes serving them."""

    def __init__(self, tmp: Path, url: str) -> None:
        self.tmp, self.url = tmp, url
        self.world = tmp / "world.log"
        self.procs: list[subprocess.Popen[bytes]] = []
        for name, body in BODIES.items():
            source = MODULE.format(body=textwrap.indent(textwrap.dedent(body), "    "))
            (tmp / f"{name}.py").write_text(source)

    def worker(self, module: str, policy: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "AETHERIS_DATABASE_URL": self.url,
            "VERSIONS_WORLD": str(self.world),
            "PYTHONPATH": os.pathsep.join([str(self.tmp), os.environ.get("PYTHONPATH", "")]),
        }
        log = open(self.tmp / f"worker-{len(self.procs)}-{module}.log", "wb")  # noqa: SIM115
        command = [sys.executable, "-m", "aetheris", "worker", "--app", f"{module}:app"]
        proc = subprocess.Popen(
            [*command, "--on-new-code", policy, "--grace", "1"],
            cwd=self.tmp, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def payments(self) -> list[str]:
        return self.world.read_text().splitlines() if self.world.exists() else []

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.tmp.glob("worker-*.log"))
        )

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def deploys(tmp_path: Path, durable_url: str) -> Iterator[Deploys]:
    found = Deploys(tmp_path, durable_url)
    try:
        yield found
    finally:
        found.stop()


async def _v1_job_approved_after_its_worker_died(deploys: Deploys, app: App) -> str:
    """A job parks on its approval under v1; the v1 worker is killed; then it is approved."""
    v1 = deploys.worker("deploy_v1", "check")
    handle = await app.start("refund", {"amount": 7})
    await wait_for(app, handle.job_id, JobStatus.PARKED, timeout=30)
    deploys.kill(v1)
    await app.approve(handle.job_id, by="ops")
    return handle.job_id


async def test_refuse_leaves_a_v1_job_to_a_v1_worker_process(deploys: Deploys) -> None:
    app = App(deploys.url)
    try:
        job_id = await _v1_job_approved_after_its_worker_died(deploys, app)
        deploys.worker("deploy_v2_unpatched", "refuse")
        new = await app.start("refund", {"amount": 3})
        await wait_for(app, new.job_id, JobStatus.PARKED, timeout=30)  # v2 serves new jobs
        await asyncio.sleep(1.0)
        assert (await app.get_job(job_id)).status is JobStatus.PENDING, deploys.logs()
        v1 = deploys.worker("deploy_v1", "refuse")
        done = await wait_for(app, job_id, timeout=30)
        assert done.result == {"branch": "old", "cents": 700}, deploys.logs()
        store = await app.open_store()
        owners = [
            e.data["owner"] for e in await store.events(job_id) if e.type is EventType.JOB_CLAIMED
        ]
        assert len(owners) == 2 and f":{v1.pid}:" in owners[-1]
        assert deploys.payments() == ["pay 7"]
        assert (await app.get_job(new.job_id)).status is JobStatus.PARKED  # v1 refuses it
    finally:
        await app.close()


async def test_a_patched_redeploy_resumes_old_jobs_on_the_old_branch(deploys: Deploys) -> None:
    app = App(deploys.url)
    try:
        job_id = await _v1_job_approved_after_its_worker_died(deploys, app)
        deploys.worker("deploy_v2", "check")
        done = await wait_for(app, job_id, timeout=30)
        assert done.result == {"branch": "old", "cents": 700}, deploys.logs()
        new = await app.start("refund", {"amount": 9})
        await wait_for(app, new.job_id, JobStatus.PARKED, timeout=30)
        await app.approve(new.job_id, by="ops")
        done = await wait_for(app, new.job_id, timeout=30)
        assert done.result == {"branch": "new", "cents": 900}, deploys.logs()
        assert sorted(deploys.payments()) == ["pay 7", "pay 9"]
    finally:
        await app.close()


async def test_check_hands_a_diverging_job_back_to_a_v1_worker_process(deploys: Deploys) -> None:
    app = App(deploys.url)
    try:
        job_id = await _v1_job_approved_after_its_worker_died(deploys, app)
        deploys.worker("deploy_v2_unpatched", "check")
        store = await app.open_store()
        deadline = time.monotonic() + 30
        while not any(e.type is EventType.JOB_RELEASED for e in await store.events(job_id)):
            assert time.monotonic() < deadline, deploys.logs()
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        job = await app.get_job(job_id)
        assert job.status is JobStatus.PENDING and job.park_reason is None, deploys.logs()
        released = [e for e in await store.events(job_id) if e.type is EventType.JOB_RELEASED]
        assert len(released) == 1  # passed over since, not claimed again
        assert "diverges" in released[0].data["reason"]
        deploys.worker("deploy_v1", "check")
        done = await wait_for(app, job_id, timeout=30)
        assert done.result == {"branch": "old", "cents": 700}, deploys.logs()
        assert deploys.payments() == ["pay 7"]
    finally:
        await app.close()
