"""Worker processes for LangGraph's W3 (crash recovery) and W5 (resume after 10,000 steps).

Run as ``python -m bench.peers.langgraph_worker SPEC_JSON`` by ``bench.peers.langgraph``. The
``run`` phase invokes the graph on a new thread and SIGKILLs its own process at the point the
spec names; the ``recover`` phase is the fresh process: it opens the same checkpointer and
resumes the thread the LangGraph way, ``graph.invoke(None, config)`` with the same
``thread_id``. Timestamps are ``time.time()`` (shared by processes) and are written to
``spec["out"]`` as JSON, outside the checkpointer.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench.peers import common
from bench.peers.langgraph_graphs import counter_graph, run_config, saver


def _die(spec: dict[str, Any], **record: Any) -> None:
    """Write what the parent needs, then SIGKILL this process (no cleanup, no flush)."""
    record["killed_at"] = time.time()
    Path(spec["out"]).write_text(json.dumps(record))
    os.kill(os.getpid(), signal.SIGKILL)


def w3(spec: dict[str, Any]) -> dict[str, Any]:
    """100 steps; each appends its number to a file and flushes it (``kill`` says where to die:
    ``in_step`` = inside step KILL_AT right after its line, ``before_step`` = at the start of
    step KILL_AT + 1, before its line)."""
    lines = open(spec["lines"], "a")  # noqa: SIM115 - kept open for the whole process
    kill = spec.get("kill")
    kill_at = spec["kill_at"]

    def body(i: int) -> int:
        n = common.step(i)  # this step's number, 1-based
        if kill == "before_step" and n == kill_at + 1:
            _die(spec, step=n)
        lines.write(f"{n}\n")
        lines.flush()
        if kill == "in_step" and n == kill_at:
            _die(spec, step=n)
        return n

    return _invoke(spec, counter_graph(spec["steps"], body))


def w5(spec: dict[str, Any]) -> dict[str, Any]:
    """``steps`` + 1 steps. ``run``: record each step's start (perf_counter), and at the start of
    step ``steps`` + 1 dump them and die. ``recover``: note when step ``steps`` + 1 starts."""
    steps = spec["steps"]
    marks: list[float] = []
    reached: dict[str, float] = {}

    def body(i: int) -> int:
        if spec["phase"] == "run":
            marks.append(time.perf_counter())
            if i == steps:
                _die(spec, marks=marks)
        else:
            reached.setdefault("resumed_from_step", i + 1)
            if i == steps and "reached" not in reached:
                reached["reached"] = time.time()
        return common.step(i)

    result = _invoke(spec, counter_graph(steps + 1, body))
    result.update(reached)
    return result


def _invoke(spec: dict[str, Any], graph: Any) -> dict[str, Any]:
    with saver(spec["backend"], spec["durability"], spec["target"]) as checkpointer:
        app = graph.compile(checkpointer=checkpointer)
        config = run_config(spec["thread_id"], spec["steps"] + 1)
        first = {"i": 0} if spec["phase"] == "run" else None
        invoked = time.time()
        state = app.invoke(first, config, durability=spec["mode"])
        done = time.time()
    return {"invoked": invoked, "done": done, "final_i": state["i"]}


def main() -> None:
    spec = json.loads(sys.argv[1])
    result = {"w3": w3, "w5": w5}[spec["task"]](spec)
    Path(spec["out"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
