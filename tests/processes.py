"""Worker processes and command runs for the tests that need real processes (kill -9, a
worker that takes over, an approval from another process): one way to start them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_worker(
    app_spec: str,
    url: str,
    world: Path,
    *,
    cwd: Path,
    crash_at: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``aetheris worker --app APP_SPEC`` on ``url``, importable from ``cwd``; with
    ``crash_at`` it kills itself there (SIGKILL). Its output goes to a log in ``world``."""
    paths = [str(cwd), str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    environment = {
        **os.environ,
        "AETHERIS_DATABASE_URL": url,
        **(env or {}),
        "PYTHONPATH": os.pathsep.join(p for p in paths if p),
    }
    environment.pop("AETHERIS_CRASH_AT", None)
    if crash_at:
        environment["AETHERIS_CRASH_AT"] = crash_at
    command = [sys.executable, "-m", "aetheris", "worker", "--app", app_spec]
    name = (crash_at or "clean").replace(":", "-").replace("@", "-")
    with (world / f"worker-{name}-{os.getpid()}.log").open("ab") as log:  # the child has a copy
        return subprocess.Popen(
            command, cwd=cwd, env=environment, stdout=log, stderr=subprocess.STDOUT
        )


def stop(worker: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM, and wait for the worker to hand its jobs back and exit."""
    worker.terminate()
    worker.wait(timeout)


def lines(path: Path) -> list[str]:
    """The lines of a file a test's tools or models append to (none if it is not there)."""
    return path.read_text().splitlines() if path.exists() else []


def aetheris_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``aetheris ARGS`` on ``url``, as a user runs it (no colours, 200 columns)."""
    env = {
        **os.environ,
        "AETHERIS_DATABASE_URL": url,
        "NO_COLOR": "1",
        "COLUMNS": "200",
        "PYTHONPATH": str(ROOT / "src"),
    }
    command = [sys.executable, "-m", "aetheris", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
