"""The peers' virtual environments: ``bench/.venvs/<peer>``, built from their requirements file.

A venv is up to date when the sha256 of its requirements file is the one stored in it
(``.requirements.sha256``). A missing venv is created (``python3 -m venv``) and filled
(``pip install -r``, plus ``npm install --prefix <venv> <pkg>@<ver>`` when the file's first line
is ``# npm: <pkg>@<ver>``); a stale one (another hash) is removed and built again; a venv built
by hand before hashes were stored is completed with ``pip install -r`` and adopted.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

BENCH = Path(__file__).resolve().parents[1]
VENVS = BENCH / ".venvs"
REQUIREMENTS = BENCH / "peers" / "requirements"
REPORT_REQUIREMENTS = BENCH / "requirements-report.txt"
STAMP = ".requirements.sha256"
INSTALL_TIMEOUT = 1_800.0


@dataclass
class Env:
    """A system's interpreter, or why there is none; the packages installed in it."""

    name: str
    python: Path | None
    problem: str | None = None
    packages: dict[str, str] = field(default_factory=dict)
    action: str = "up to date"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def npm_package(requirements: Path) -> str | None:
    """``<pkg>@<ver>`` from a first line ``# npm: <pkg>@<ver>``, if there is one."""
    first = requirements.read_text().splitlines()[:1]
    if first and first[0].startswith("# npm:"):
        return first[0].removeprefix("# npm:").strip()
    return None


def _run(command: list[str], console: Console, label: str, log: Path) -> None:
    """Run an install command, showing its latest output line; raise with its tail on failure."""
    tail: deque[str] = deque(maxlen=15)
    began = time.monotonic()
    with (
        open(log, "a") as out,
        console.status(f"{label}: {' '.join(command[:4])} …") as status,
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        ) as proc,
    ):
        out.write(f"$ {' '.join(command)}\n")
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            text = line.strip()
            if text:
                tail.append(text)
                elapsed = time.monotonic() - began
                status.update(f"{label} [{elapsed:5.0f} s]: {text[:100]}")
            if time.monotonic() - began > INSTALL_TIMEOUT:
                proc.kill()
                raise RuntimeError(f"timed out after {INSTALL_TIMEOUT:.0f} s: {tail[-1]}")
        code = proc.wait()
    if code != 0:
        raise RuntimeError(f"`{' '.join(command[:5])}` exited {code}: " + " | ".join(tail))


def freeze(python: Path) -> dict[str, str]:
    done = subprocess.run(
        [str(python), "-m", "pip", "freeze", "--all"],
        capture_output=True,
        text=True,
        check=False,
    )
    found = {}
    for line in done.stdout.splitlines():
        name, sep, ver = line.partition("==")
        if sep:
            found[name] = ver
    return found


def ensure(name: str, requirements: Path, console: Console, log: Path) -> Env:
    """Make ``bench/.venvs/<name>`` match ``requirements``; never raises."""
    venv = VENVS / name
    python = venv / "bin" / "python"
    stamp = venv / STAMP
    if not requirements.exists():
        missing = f"no requirements file {requirements.relative_to(BENCH.parent)}"
        return Env(name, None, missing, action="failed")
    want = digest(requirements)
    try:
        if python.exists() and stamp.exists() and stamp.read_text().strip() == want:
            return Env(name, python, packages=freeze(python))
        if stamp.exists():
            action = "rebuilt (requirements changed)"
            console.print(f"[bold]{name}[/]: requirements changed, rebuilding {venv}")
            shutil.rmtree(venv)
        elif python.exists():
            action = "completed and adopted (no stored hash)"
            console.print(f"[bold]{name}[/]: venv without a stored hash: pip install -r, adopt")
        else:
            action = "created"
            console.print(f"[bold]{name}[/]: creating {venv}")
        if not python.exists():
            base = shutil.which("python3") or sys.executable
            _run([base, "-m", "venv", str(venv)], console, name, log)
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
        _run([*pip, "-r", str(requirements)], console, name, log)
        package = npm_package(requirements)
        if package:
            npm = shutil.which("npm")
            if npm is None:
                raise RuntimeError(f"npm is needed for {package} and is not installed")
            _run([npm, "install", "--prefix", str(venv), package], console, name, log)
        stamp.write_text(want + "\n")
        console.print(f"[bold]{name}[/]: venv {action}")
        return Env(name, python, packages=freeze(python), action=action)
    except (OSError, RuntimeError) as exc:
        reason = str(exc)[-600:]
        console.print(f"[bold red]{name}: not installed[/]: {reason} (log: {log})")
        return Env(name, None, reason, action="failed")


def main_env() -> Env:
    """The main environment, where Aetheris runs (``sys.executable``)."""
    python = Path(sys.executable)
    return Env("aetheris", python, packages=freeze(python), action="main environment")
