"""The README's Python snippets are the files in ``examples/``, and every example runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if p.name != "__init__.py")


def _blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)


def test_every_python_snippet_of_the_readme_is_in_an_example_file() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    sources = [p.read_text("utf-8") for p in EXAMPLES]
    blocks = _blocks(readme)
    assert blocks, "the README has no Python snippet"
    for block in blocks:
        assert any(block.strip() in source for source in sources), (
            f"this README snippet is in no file of examples/:\n{block}"
        )


@pytest.mark.parametrize("example", [p for p in EXAMPLES if p.name != "refund_demo.py"], ids=str)
def test_an_example_runs_to_its_end(example: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AETHERIS_CRASH_AT")}
    env["AETHERIS_DATABASE_URL"] = f"sqlite:///{tmp_path / 'example.db'}"
    done = subprocess.run(
        [sys.executable, str(example)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip()
