"""``docs/cli.md`` is the commands' own help: regenerated here, it must be the same."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from aetheris.cli.reference import reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_the_cli_reference_is_generated_from_the_commands() -> None:
    # In a fresh process: click caches each command's help option the first time a context
    # asks for it, so a test that ran a subcommand alone in this process would change it.
    command = [sys.executable, "-m", "aetheris.cli.reference"]
    made = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert DOC.read_text("utf-8") == made, (
        "docs/cli.md is out of date: python -m aetheris.cli.reference > docs/cli.md"
    )


def test_the_reference_covers_every_command() -> None:
    text = reference()
    for command in (
        "aetheris start",
        "aetheris jobs list",
        "aetheris approvals list",
        "aetheris effects resolve",
        "aetheris db migrate",
        "aetheris status",
    ):
        assert f"## `{command}`" in text
