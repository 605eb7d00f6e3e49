"""Imports point one way: the layers of the design, checked on the installed package.

The contract (``[tool.importlinter]`` in pyproject.toml) lists the layers top to bottom; a
module may import only what is below it. A cycle, or a module reaching up (a store that imports
the runtime, a runner that imports the App), breaks it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_imports_point_down_only() -> None:
    lint = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    done = subprocess.run(
        [lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Imports point down only KEPT" in done.stdout
