"""The scripted agent conversation of A1 (PydanticAI) and A2 (LangGraph), framework-free.

Standard library only: every venv imports it (Aetheris's main environment, DBOS's, Temporal's,
LangGraph's). Turn ``t`` of an N-turn run is one model request answered with one tool call,
then that tool's execution; the tools take turns, ``lookup`` (pure), ``reserve`` (idempotent)
and ``charge`` (at_most_once, the one a crash must not repeat); after N turns the model answers
with text. The run's N travels in the user prompt (``turns=N``), so a model served in another
process (a Temporal activity, a resumed worker) reads it from the conversation itself.

Counting real calls (the kill -9 runs): with ``BENCH_AGENT_WORLD`` set to a folder, the model
appends ``model <t>`` to ``calls.log`` for every request it really answers and each tool
``<tool> <t>`` for every real dispatch. ``BENCH_AGENT_KILL=<t>`` makes ``charge`` of turn ``t``
SIGKILL its own process right after its line (its side effect) is written, after writing
``time.time()`` to ``killed`` in the world folder. Without the variables nothing is written,
so timed runs do no file I/O of their own.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from pathlib import Path

TOOLS = ("lookup", "reserve", "charge")  # turn t calls TOOLS[t % 3]
EFFECTS = {"lookup": "pure", "reserve": "idempotent", "charge": "at_most_once"}
TURNS = 20  # µs per turn is timed over a run of this many turns
STORED_TURNS = 200  # bytes stored after a run of this many turns
KILL_RUN_TURNS = 9  # the kill -9 run: 9 turns ...
KILL_TURN = 5  # ... and charge of turn 5 kills its process right after its side effect
WORLD_ENV = "BENCH_AGENT_WORLD"
KILL_ENV = "BENCH_AGENT_KILL"
PLAIN_REPEATS = 3  # the plain (non-durable) run is timed this many times, median kept
PADDING = 200  # characters of filler in each tool result, as in W4


def prompt(turns: int) -> str:
    return f"Run the order workflow. turns={turns}"


def turns_in(text: str) -> int:
    """The N of ``prompt(N)``."""
    found = re.search(r"turns=(\d+)", text)
    if found is None:
        raise ValueError(f"no turns=N in the prompt {text[:80]!r}")
    return int(found.group(1))


def tool_for(turn: int) -> str:
    return TOOLS[turn % len(TOOLS)]


def tool_args(turn: int) -> dict[str, int]:
    return {"item": turn}


def tool_result(name: str, item: int) -> str:
    return f"{name} item {item}: ok " + "y" * PADDING


def answer(turns: int) -> str:
    return f"done after {turns} tool calls"


def note(line: str) -> None:
    """Count a real call (only in kill runs, where ``BENCH_AGENT_WORLD`` is set)."""
    world = os.environ.get(WORLD_ENV)
    if world:
        with open(Path(world) / "calls.log", "a") as f:
            f.write(line + "\n")
            f.flush()


def model_called(turn: int) -> None:
    note(f"model {turn}")


def tool_called(name: str, item: int) -> str:
    """A tool's body: count the dispatch, maybe die (``charge`` of the kill turn), answer."""
    note(f"{name} {item}")
    if name == "charge" and os.environ.get(KILL_ENV) == str(item):
        Path(os.environ[WORLD_ENV], "killed").write_text(repr(time.time()))
        os.kill(os.getpid(), signal.SIGKILL)
    return tool_result(name, item)


def duplicates(log_text: str, turn: int = KILL_TURN) -> dict[str, object]:
    """From ``calls.log``: how often the model and the at_most_once tool ran for ``turn``
    (``model <turn>`` is the request that asked for that turn's tool call), the extra runs of
    the at_most_once tool (any turn), of the other tools and of the model, and every call that
    ran more than once."""
    counts = Counter(line.strip() for line in log_text.splitlines() if line.strip())
    twice = sorted(line for line, n in counts.items() if n > 1)
    return {
        "model_runs_for_turn": counts[f"model {turn}"],
        "charge_runs_for_turn": counts[f"charge {turn}"],
        "dup_model_calls": sum(n - 1 for line, n in counts.items() if line.startswith("model ")),
        "dup_tool_calls": sum(n - 1 for line, n in counts.items() if not line.startswith("model ")),
        "dup_charge_calls": sum(n - 1 for line, n in counts.items() if line.startswith("charge ")),
        "ran_more_than_once": twice,
        "calls": sum(counts.values()),
    }
