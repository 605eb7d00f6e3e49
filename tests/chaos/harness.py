"""Real worker processes for chaos tests: start, kill -9, SIGSTOP, watch the world."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from aetheris import App, Job, JobStatus

HERE = Path(__file__).resolve().parent


class Cluster:
    """Worker processes on one database, and the world directory their tools write to."""

    def __init__(self, tmp: Path, url: str, *, lease_ttl: float = 2.0, pace: float = 0.0) -> None:
        self.tmp = tmp
        self.url = url
        self.world = tmp / "world"
        self.world.mkdir(exist_ok=True)
        self.lease_ttl = lease_ttl
        self.pace = pace
        self.procs: list[subprocess.Popen[bytes]] = []
        self.extra_env: dict[str, str] = {}
        self.killed: set[int] = set()
        self.started = 0

    def env(self, crash_at: str | None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            AETHERIS_DATABASE_URL=self.url,
            CHAOS_WORLD=str(self.world),
            CHAOS_LEASE_TTL=str(self.lease_ttl),
            CHAOS_PACE=str(self.pace),
            PYTHONPATH=os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]),
        )
        env.update(self.extra_env)
        env.pop("AETHERIS_CRASH_AT", None)
        if crash_at:
            env["AETHERIS_CRASH_AT"] = crash_at
        return env

    def start_worker(
        self,
        *,
        crash_at: str | None = None,
        concurrency: int = 4,
        url: str | None = None,
        wrap: tuple[str, ...] = (),
        grace: float = 1.0,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """A worker process; ``wrap`` prefixes the command (e.g. ``ip netns exec NS``)."""
        self.started += 1
        environment = {**self.env(crash_at), **(env or {})}
        if url is not None:
            environment["AETHERIS_DATABASE_URL"] = url
        log = open(self.tmp / f"worker-{self.started}.log", "wb")  # noqa: SIM115
        command = [
            sys.executable,
            "-m",
            "aetheris",
            "worker",
            "--app",
            "chaos_app:app",
            "--concurrency",
            str(concurrency),
            "--grace",
            str(grace),
        ]
        proc = subprocess.Popen(
            [*wrap, *command], cwd=HERE, env=environment, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            self.killed.add(proc.pid)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def lines(self, log: str) -> list[str]:
        path = self.world / log
        return path.read_text().splitlines() if path.exists() else []

    def count(self, log: str) -> Counter[str]:
        return Counter(self.lines(log))

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.tmp.glob("worker-*.log"))
        )


async def wait_job(app: App, job_id: str, *statuses: JobStatus, timeout: float = 30.0) -> Job:
    wanted = set(statuses) or {s for s in JobStatus if s.terminal}
    deadline = time.monotonic() + timeout
    while True:
        job = await app.get_job(job_id)
        if job.status in wanted:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} is {job.status}, wanted {sorted(wanted)}")
        await asyncio.sleep(0.05)


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait until ``predicate()`` holds (polling), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout}s: {predicate}")
        await asyncio.sleep(0.02)


def wait_exit(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    return proc.wait(timeout=timeout)


def pid_of(owner: str) -> int:
    """Worker ids are ``host:pid:suffix``."""
    return int(owner.split(":")[1])


def with_fast_reaping(url: str) -> str:
    """On PostgreSQL, reap a dead worker after 0.5 s instead of 5 (tests restart no server)."""
    if not url.startswith("postgresql"):
        return url
    return url + ("&" if "?" in url else "?") + "aetheris_reap_grace=0.5"


def wait_stopped(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Wait until ``proc`` has stopped itself (SIGSTOP at a crash point)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"worker {proc.pid} exited ({proc.returncode}) instead of stopping"
            )
        state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        time.sleep(0.02)
    raise AssertionError(f"worker {proc.pid} did not stop within {timeout}s")
