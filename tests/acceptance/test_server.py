"""``aetheris server`` for real, over a socket, with worker processes: a client watches a job's
event stream while its worker is killed with SIGKILL, and sees the job taken over and ended,
resuming its stream with ``Last-Event-ID`` on the way."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"
APP = "acceptance_app:app"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Processes:
    """``python -m aetheris ...`` from this checkout, in the acceptance App's folder."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.env = {k: v for k, v in os.environ.items() if k != "AETHERIS_CRASH_AT"}
        self.env.update(
            AETHERIS_DATABASE_URL=f"sqlite:///{tmp_path / 'aetheris.db'}",
            ACCEPTANCE_WORLD=str(tmp_path / "world"),
            PYTHONPATH=os.pathsep.join([str(SRC), str(HERE)]),
            PYTHONUNBUFFERED="1",
        )
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "aetheris", *args],
            cwd=HERE,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "aetheris", *args],
                cwd=HERE,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.started.append((proc, log))
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        return next(log for p, log in self.started if p is proc).read_text(errors="replace")

    def close(self) -> None:
        for proc, _ in self.started:
            if proc.poll() is None:
                proc.terminate()
        for proc, _ in self.started:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.close()


def wait_until(check: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Watcher(threading.Thread):
    """Reads a job's event stream in the background, frame by frame."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url, self.headers = url, headers
        self.frames: list[dict[str, str]] = []
        self.done = threading.Event()

    def run(self) -> None:
        fields: dict[str, str] = {}
        with (
            httpx.Client(timeout=httpx.Timeout(30, read=60)) as client,
            client.stream("GET", self.url, headers=self.headers) as response,
        ):
            assert response.status_code == 200
            for line in response.iter_lines():
                if not line:
                    if "event" in fields:
                        self.frames.append(fields)
                    if fields.get("event") == "end":
                        self.done.set()
                        return
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    fields[name] = value

    def types(self) -> list[str]:
        return [f["event"] for f in self.frames]


@pytest.mark.chaos
def test_a_client_watches_a_job_survive_a_killed_worker(processes: Processes) -> None:
    token = json.loads(processes.run("keys", "create", "--role", "operator", "--tenant", "acme",
                                     "--json"))["key"]  # fmt: skip
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = processes.spawn("server", "server", "--app", APP, "--port", str(port))
    headers = {"Authorization": f"Bearer {token}"}

    def up() -> bool:
        assert server.poll() is None, processes.output(server)
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
        return False

    wait_until(up, "the server")
    first = processes.spawn("worker-1", "worker", "--app", APP)
    started = httpx.post(
        f"{base}/v1/jobs",
        json={"agent": "slow_order", "input": {"order_id": "o1", "seconds": 3}},
        headers=headers,
    )
    assert started.status_code == 201, started.text
    job_id = started.json()["id"]
    stream = f"{base}/v1/jobs/{job_id}/events/stream"
    watcher = Watcher(stream, headers)
    watcher.start()
    naps = processes.tmp_path / "world" / "naps.log"
    wait_until(naps.exists, "the nap to begin")  # charged, then napping: kill it here
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    wait_until(lambda: "op" in watcher.types(), "the first events")
    before_kill = [int(f["id"]) for f in watcher.frames if "id" in f]

    # Another client comes in mid-way and resumes from what it saw last.
    resumed = Watcher(stream, {**headers, "Last-Event-ID": str(before_kill[-1])})
    resumed.start()
    processes.spawn("worker-2", "worker", "--app", APP)
    assert watcher.done.wait(timeout=60), watcher.types()
    assert resumed.done.wait(timeout=10), resumed.types()

    seqs = [int(f["id"]) for f in watcher.frames if "id" in f]
    assert seqs == list(range(len(seqs)))  # every event once, in order, across the kill
    claims = [json.loads(f["data"])["data"] for f in watcher.frames if f["event"] == "job_claimed"]
    assert claims[0]["recovered_from"] is None and claims[-1]["recovered_from"] is not None
    assert watcher.types()[-2:] == ["job_succeeded", "end"]
    assert json.loads(watcher.frames[-1]["data"]) == {"status": "succeeded"}
    assert resumed.frames == [f for f in watcher.frames if int(f.get("id", 1e9)) > before_kill[-1]]
    charges = (processes.tmp_path / "world" / "charges.log").read_text().splitlines()
    assert len(charges) == 1  # the charge made before the kill was not dispatched again
    assert len(naps.read_text().splitlines()) == 2  # the pure nap ran again
