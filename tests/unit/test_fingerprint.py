"""An agent's code version: given, or a fingerprint of its code that is stable across processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import aetheris
from aetheris.errors import ConfigurationError
from aetheris.fingerprint import fingerprint

AGENT_MODULE = """
import aetheris

app = aetheris.App("memory://")
FEE = 5


@app.tool(effect="at_most_once")
async def pay(amount: int) -> int:
    return amount


async def helper(ctx, amount):
    return amount + FEE


@app.agent
async def refund(ctx, amount: int) -> int:
    total = await helper(ctx, amount)
    if amount in {"a", "b", "c", "d"}:  # a frozenset constant: its order varies by hash seed
        return 0
    return await pay(total)


print(app.agent_def("refund").version)
"""


def _version(tmp_path: Path, source: str, seed: str = "1") -> str:
    path = tmp_path / "agent_mod.py"
    path.write_text(textwrap.dedent(source))
    env = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout.strip()


def test_the_fingerprint_is_the_same_in_every_process(tmp_path: Path) -> None:
    versions = {_version(tmp_path, AGENT_MODULE, seed) for seed in ("1", "2", "3", "random")}
    assert len(versions) == 1
    (version,) = versions
    assert len(version) == 12 and int(version, 16) >= 0


@pytest.mark.parametrize(
    ("what", "old", "new"),
    [
        ("the agent's body", "return await pay(total)", "return await pay(total + 1)"),
        ("a helper of its module", "return amount + FEE", "return amount - FEE"),
        ("a constant it reaches", "FEE = 5", "FEE = 6"),
        ("a tool's body", "    return amount\n", "    return amount * 2\n"),
        ("a tool's effect class", 'effect="at_most_once"', 'effect="idempotent"'),
    ],
)
def test_the_fingerprint_changes_with_the_code(
    tmp_path: Path, what: str, old: str, new: str
) -> None:
    assert old in AGENT_MODULE, what
    before = _version(tmp_path, AGENT_MODULE)
    assert _version(tmp_path, AGENT_MODULE.replace(old, new)) != before, what


def test_comments_blank_lines_and_moves_do_not_change_it(tmp_path: Path) -> None:
    before = _version(tmp_path, AGENT_MODULE)
    moved = "# a comment\n\n\n" + AGENT_MODULE.replace("FEE = 5\n", "FEE = 5  # dollars\n\n\n")
    assert _version(tmp_path, moved) == before


def test_closures_and_nested_functions_are_covered() -> None:
    def make(step_name: str, bonus: int):  # type: ignore[no-untyped-def]
        async def tool_fn() -> int:
            return bonus

        async def agent(ctx: aetheris.Context) -> int:
            inner = [x * 2 for x in range(3)]  # a comprehension: nested code
            return await ctx.step(step_name, tool_fn) + sum(inner)

        return agent

    assert fingerprint(make("s", 1)) == fingerprint(make("s", 1))
    assert fingerprint(make("s", 1)) != fingerprint(make("t", 1))  # a closure's value
    assert fingerprint(make("s", 1)) != fingerprint(make("s", 2))  # a helper's closure


def test_a_given_version_is_used_as_it_is() -> None:
    app = aetheris.App("memory://")

    @app.agent(version="2024-06-refunds")
    async def refund(ctx: aetheris.Context) -> None:
        return None

    @app.agent
    async def other(ctx: aetheris.Context) -> None:
        return None

    assert app.agent_def("refund").version == "2024-06-refunds"
    assert app.agent_def("other").version == fingerprint(other)


@pytest.mark.parametrize("bad", ["", "v 2", "x" * 65, "v\x00"])
def test_a_version_no_journal_should_carry_is_refused(bad: str) -> None:
    app = aetheris.App("memory://")
    with pytest.raises(ConfigurationError, match="version"):

        @app.agent(version=bad)
        async def agent(ctx: aetheris.Context) -> None:
            return None
