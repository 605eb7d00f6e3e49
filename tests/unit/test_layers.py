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


# A reader should take in a module at a sitting and a function at a glance.
MODULE_LINES = 650
FUNCTION_LINES = 50


def test_modules_and_functions_stay_small() -> None:
    import ast

    too_long: list[str] = []
    for path in sorted((ROOT / "src" / "aetheris").rglob("*.py")):
        text = path.read_text("utf-8")
        name = path.relative_to(ROOT / "src").as_posix()
        if len(text.splitlines()) > MODULE_LINES:
            too_long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > FUNCTION_LINES:
                    too_long.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, "\n".join(too_long)
