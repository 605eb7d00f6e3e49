"""A new project, as a newcomer makes and runs it: ``aetheris init``, ``python -m pytest``
inside it, ``aetheris run`` as a process (a job started through the command line, approved,
shown as it runs; a killed worker reported and restarted; Ctrl-C stopping everything).

The commands run with ``PYTHONPATH`` at the ``aetheris`` these tests import, so a checkout
tests its own code whatever is installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

import aetheris
from tests.acceptance.test_cli import AETHERIS

SRC = Path(aetheris.__file__).resolve().parents[1]


def project_env(**extra: str) -> dict[str, str]:
    drop = ("AETHERIS_DATABASE_URL", "AETHERIS_LLM_URL", "AETHERIS_LLM_MODEL", "AETHERIS_CRASH_AT")
    env = {k: v for k, v in os.environ.items() if k not in drop and k != "FORCE_COLOR"}
    env.update(PYTHONPATH=str(SRC), NO_COLOR="1", COLUMNS="200", PYTHONUNBUFFERED="1", **extra)
    return env


def aetheris_in(
    folder: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AETHERIS, *args],
        cwd=folder,
        env=env or project_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(folder: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = aetheris_in(folder, *args, env=env)
    assert done.returncode == 0, f"aetheris {' '.join(args)}: {done.stderr}{done.stdout}"
    return done.stdout


def make_project(tmp_path: Path) -> Path:
    ok(tmp_path, "init", "shop")
    return tmp_path / "shop"


class Lines:
    """A child's output, read by a thread, line by line, to wait for."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 30) -> str:
        """The first line from now on that matches ``pattern`` (a regular expression)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(left, 0.01))
            except queue.Empty:
                line = None if left <= 0 else ""
            if line is None:
                raise AssertionError(f"no line matching {pattern!r}; output:\n" + self.text)
            if line:
                self.seen.append(line)
                if re.search(pattern, line):
                    return line

    def rest(self, timeout: float = 5) -> None:
        """Read what is left until the stream ends."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                return
            self.seen.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self.seen)


def children_of(pid: int) -> dict[int, str]:
    """The processes whose parent is ``pid``: pid → command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found[int(entry.name)] = cmdline
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def job(folder: Path, job_id: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(ok(folder, "jobs", "show", job_id, "--json"))
    return found


def wait_status(folder: Path, job_id: str, *statuses: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (now := job(folder, job_id))["status"] not in statuses:
        assert time.monotonic() < deadline, f"job {job_id} is {now['status']}, not {statuses}"
        time.sleep(0.2)
    return now


def test_init_makes_a_project_whose_tests_pass(tmp_path: Path) -> None:
    done = aetheris_in(tmp_path, "init", "shop")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "shop"
    for name in ("app.py", "test_app.py", "aetheris.toml", "model_script.json", ".gitignore"):
        assert name in done.stdout
        assert (folder / name).is_file()
    assert "cd shop && aetheris run" in done.stdout
    app = (folder / "app.py").read_text()
    for effect in ('effect="idempotent"', 'effect="at_most_once"', "requires_approval=True"):
        assert effect in app
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=folder,
        env=project_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout


def test_init_refuses_a_folder_that_is_not_empty_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    done = aetheris_in(tmp_path.parent, "init", tmp_path.name)
    assert done.returncode == 2
    assert "is not empty" in done.stderr and "--force" in done.stderr
    assert not (tmp_path / "app.py").exists()
    ok(tmp_path.parent, "init", tmp_path.name, "--force")
    assert (tmp_path / "app.py").is_file()
    assert (tmp_path / "mine.txt").read_text() == "keep me"


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str], Lines]]:
    """``aetheris run`` in a new project, on a free port, until the test ends."""
    folder = make_project(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [AETHERIS, "run", "--port", str(port)],
        cwd=folder,
        env=project_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = Lines(proc.stdout)  # type: ignore[arg-type]
    try:
        out.wait_for(r"^jobs:$", timeout=60)
        yield folder, proc, out
    finally:
        children = children_of(proc.pid)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for pid in children:  # never leave one behind, even when the test failed
            with_signal(pid, signal.SIGKILL)
        out.rest()
        proc.stdout.close()  # type: ignore[union-attr]


def with_signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def test_run_serves_a_project_shows_its_jobs_and_stops_on_ctrl_c(
    running: tuple[Path, subprocess.Popen[str], Lines],
) -> None:
    folder, proc, out = running
    banner = out.text
    for what in ("server    http://127.0.0.1:", "database  sqlite:///.aetheris/aetheris.db"):
        assert what in banner
    assert "model     scripted (model_script.json" in banner
    assert "aetheris approve JOB_ID" in banner and "agents chat, support" in banner
    ui = re.search(r"^  web UI    (http://127\.0\.0\.1:\d+/ui/)$", banner, re.M)
    assert ui is not None, banner
    page = httpx.get(ui.group(1), timeout=10)
    assert page.status_code == 200 and "<title>Aetheris</title>" in page.text

    question = json.dumps({"question": "Please refund order o1."})
    job_id = ok(folder, "start", "support", "--input", question).strip()
    out.wait_for(rf"job {job_id} started: agent support")
    out.wait_for(rf"job {job_id} parked \(approval 'tool:refund'")
    assert job(folder, job_id)["park_reason"] == "approval"
    ok(folder, "approve", job_id)
    out.wait_for(rf"job {job_id} resumed after park \(approval\)")
    out.wait_for(rf"job {job_id} succeeded")
    assert "refunded" in job(folder, job_id)["result"]

    children = children_of(proc.pid)
    assert sorted(" server " in c or " worker " in c for c in children.values()) == [True, True]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    out.rest()
    assert out.text.endswith("stopped cleanly")
    time.sleep(0.2)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()], "a child lives on"


def test_run_reports_a_killed_worker_and_starts_another(
    running: tuple[Path, subprocess.Popen[str], Lines],
) -> None:
    folder, proc, out = running
    time.sleep(3.5)  # past the start-up window: a death now is a crash, not a failed start
    (worker,) = [pid for pid, cmd in children_of(proc.pid).items() if " worker " in cmd]
    os.kill(worker, signal.SIGKILL)
    out.wait_for(r"worker stopped unexpectedly \(killed by SIGKILL\); starting it again")
    job_id = ok(folder, "start", "chat").strip()
    out.wait_for(rf"job {job_id} parked \(signal 'message'\)")
    assert proc.poll() is None


def readme_first_command() -> str:
    """The README's first set-up command, as a newcomer copies it."""
    text = (SRC.parent / "README.md").read_text("utf-8")
    block = text.split("<!-- first-command -->", 1)[1].split("<!-- /first-command -->", 1)[0]
    [command] = [line for line in block.splitlines() if line and not line.startswith("```")]
    return command


def test_the_readmes_first_command_runs_an_agent_a_newcomer_can_watch(tmp_path: Path) -> None:
    """What the README's first command does after its install: a project, one run of its
    support agent through the server, its worker killed while the job waits for approval, the
    approval, the trace, and a clean stop. Run as written (twice: the second time over the
    project the first made), with ``aetheris`` this checkout's."""
    install, rest = readme_first_command().split(" && ", 1)
    assert install == "pip install -e ."
    env = project_env(PATH=f"{Path(AETHERIS).parent}:{os.environ['PATH']}")
    for attempt in (1, 2):
        done = subprocess.run(
            ["bash", "-c", rest], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=180,
        )  # fmt: skip
        out = done.stdout + done.stderr
        assert done.returncode == 0, out
        assert "demo: parked: refund" in out and "a person's approval" in out
        assert "worker stopped unexpectedly (killed by SIGKILL); starting it again" in out
        assert re.search(r"demo: job \S+ succeeded: 'Done: order o1 is refunded", out), out
        assert "approved by `aetheris run --demo`" in out  # in the trace, as the journal has it
        assert re.search(r"refund#1 .* asked by pos 2;", out), out  # the answer that asked
        assert out.rstrip().endswith("stopped cleanly"), attempt
    jobs = json.loads(aetheris_in(tmp_path / "demo", "jobs", "list", "--json", env=env).stdout)
    assert [j["status"] for j in jobs] == ["succeeded", "succeeded"]
    listed = aetheris_in(tmp_path / "demo", "effects", "list", "--json", env=env)
    effects = json.loads(listed.stdout)
    refunds = [e for e in effects if e["tool"] == "refund"]
    assert len(refunds) == 2 and {e["state"] for e in refunds} == {"committed"}
