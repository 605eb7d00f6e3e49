"""``python -m bench.overhead``: what observing a worker costs per durable operation.

Runs W1 (1,000 ``ctx.step`` calls; 1,000 ``at_most_once`` tool calls) and W4 (200 agent turns
of a model call and a step) in this process, on a fresh database each time, ``--rounds`` times,
and prints the median µs per operation: wall time (``time.perf_counter`` inside the agent, as
``bench.core`` reports W1) and CPU time of the whole process (``time.process_time``, less
disturbed by other load on the machine; it includes the worker's start and the job's claim).

``--observer``: ``none`` (the default: what every worker pays), ``metrics`` (a
:class:`aetheris.metrics.Metrics`) or ``tracing`` (an OpenTelemetry SDK tracer provider with no
exporter). To compare two checkouts, run it in each (``PYTHONPATH=<checkout>/src:<checkout>``),
alternating; ``none`` runs on a checkout from before the observer existed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from bench import workloads

CASES = ("step", "tool", "w4")
PER_JOB = {"step": 1000, "tool": 1000, "w4": 200}


def _url(backend: str, folder: str) -> str:
    if backend == "memory":
        return "memory://"
    suffix = "?synchronous=normal" if backend == "normal" else ""
    return f"sqlite:///{folder}/db.sqlite{suffix}"


async def _one(case: str, backend: str) -> tuple[float, float]:
    """Wall µs/op measured in the agent, CPU µs/op of the process, for one fresh job."""
    with tempfile.TemporaryDirectory(prefix="aetheris-overhead-") as folder:
        url = _url(backend, folder)
        began = time.process_time()
        if case == "w4":
            wall = await workloads.w4_turns(url, PER_JOB[case])
        else:
            agent = "w1_steps" if case == "step" else "w1_tool"
            wall = (await workloads.w1_job(url, agent, {"n": PER_JOB[case]}))["us_per_step"]
        return wall, (time.process_time() - began) / PER_JOB[case] * 1e6


def _observe(kind: str) -> Callable[[], None]:
    """Install the observer asked for in this process; returns how to remove it."""
    if kind == "none":
        return lambda: None
    from aetheris import observe

    observer: Any
    if kind == "metrics":
        from aetheris.metrics import Metrics

        observer = Metrics()
    else:
        from opentelemetry.sdk.trace import TracerProvider

        from aetheris.tracing import Tracing

        observer = Tracing(TracerProvider())
    observe.install(observer)
    return lambda: observe.uninstall(observer)


async def run(rounds: int, backends: list[str], observer: str) -> dict[str, dict[str, float]]:
    found: dict[str, tuple[list[float], list[float]]] = {}
    remove = _observe(observer)
    try:
        for _ in range(rounds):
            for case in CASES:
                for backend in backends:
                    wall, cpu = await _one(case, backend)
                    walls, cpus = found.setdefault(f"{case}/{backend}", ([], []))
                    walls.append(wall)
                    cpus.append(cpu)
    finally:
        remove()
    return {
        key: {"wall_us": statistics.median(w), "cpu_us": statistics.median(c)}
        for key, (w, c) in found.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backends", default="memory,normal,full")
    parser.add_argument("--observer", choices=("none", "metrics", "tracing"), default="none")
    parser.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    args = parser.parse_args()
    result = asyncio.run(run(args.rounds, args.backends.split(","), args.observer))
    if args.json:
        print(json.dumps(result))
        return
    print(f"observer {args.observer}, median of {args.rounds} runs (µs per operation)")
    for key, figures in result.items():
        print(f"{key:14s} wall {figures['wall_us']:9.1f}   cpu {figures['cpu_us']:9.1f}")


if __name__ == "__main__":
    main()
