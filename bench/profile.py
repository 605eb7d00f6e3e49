"""Where a W1 step's (or W4 turn's) time goes: the job under pyinstrument, on a fresh database.

``python -m bench.profile [--workload w1|w4] [--backend sqlite|postgres]
[--synchronous full|normal] [--steps 20000]
[--interval 0.001] [--html out.html]`` (needs ``pip install pyinstrument``). Runs the W1 job of
``bench.workloads`` (``await ctx.step("s", ainc, i)`` n times) or its W4 job (n turns of two steps
with plain-function bodies, which the runtime runs in a thread), agents in ``bench/app.py``, one
in-process worker, concurrency 1, under pyinstrument's sampling profiler, and prints:

* the µs per step without and with the profiler (its overhead shows as the difference);
* the floor: on SQLite, µs per bare ``sqlite3`` commit of what a pure step writes (the fenced
  job-row UPDATE and one event INSERT, same schema and pragmas, no runtime), and the fsync
  probe's p50; on PostgreSQL, µs per commit of the store's own ``commit_step`` statement
  (prepared) from a bare synchronous psycopg loop;
* the share of the sampled time per **kind of work**: SQLite (inside the ``sqlite3`` C calls,
  fsync included), canonical JSON, sha256, asyncio's event loop, the runtime's own Python code
  (``aetheris``), the agent's loop, the rest;
* the 20 functions with the most self time, and pyinstrument's call tree trimmed to frames of at
  least 2 %.

The shares are of the profiled run; read them as proportions, not absolute costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.floor import floor_db, sync_commits
from bench.peers.common import fresh_postgres_db, fsync_p50_us
from bench.workloads import w1_job, w4_turns


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--workload", choices=["w1", "w4"], default="w1")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--synchronous", choices=["full", "normal"], default="full", help="SQLite only"
    )
    parser.add_argument("--steps", type=int, default=20_000, help="W1 steps / W4 turns")
    parser.add_argument("--interval", type=float, default=0.001, help="sampling interval, s")
    parser.add_argument("--html", type=Path, default=None, help="also write pyinstrument's HTML")
    return parser.parse_args(argv)


async def run_w1(url: str, steps: int) -> float:
    """µs per step of W1: ``await ctx.step("s", ainc, i)``."""
    return float((await w1_job(url, "w1_steps", {"n": steps, "body": "async"}))["us_per_step"])


async def run_w4(url: str, turns: int) -> float:
    """µs per turn of W4: a journaled model call and a sync ``tool`` step."""
    return await w4_turns(url, turns)


def sqlite_floor(tmp: str, synchronous: str, commits: int) -> tuple[float, float]:
    """µs per bare commit of what a pure step writes (the fenced job-row UPDATE and one event
    INSERT in a ``BEGIN IMMEDIATE`` transaction) on the store's schema, no runtime; and the fsync
    probe's p50 (4 KiB write + fsync) in the same directory."""
    path = Path(tmp) / "floor.sqlite"
    asyncio.run(floor_db(f"sqlite:///{path}"))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("UPDATE jobs SET status = 'running', lease_epoch = 1 WHERE id = 'floor'")
    body = b'{"kind":"step","name":"s#1","args_hash":"' + b"0" * 64 + b'","result":1}'
    began = time.perf_counter()
    for seq in range(1, commits + 1):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "UPDATE jobs SET event_count = ?, head_hash = ?, updated_at = ? "
            "WHERE id = 'floor' AND lease_epoch = 1 AND status = 'running' AND event_count = ?",
            (seq, f"{seq:064x}", time.time(), seq - 1),
        )
        conn.execute(
            "INSERT INTO events (job_id, seq, type, position, body, prev_hash, hash) "
            "VALUES ('floor', ?, 'step', ?, ?, ?, ?)",
            (seq, seq, body, f"{seq - 1:064x}", f"{seq:064x}"),
        )
        conn.execute("COMMIT")
    per_commit = (time.perf_counter() - began) / commits * 1e6
    conn.close()
    return per_commit, fsync_p50_us(Path(tmp))


def kind(frame: Any) -> str:
    path, function = str(frame.file_path or ""), str(frame.function)
    if function.startswith(("Connection.", "Cursor.")):
        return "SQLite (sqlite3 C calls: statements, commit, fsync)"
    if "/json/" in path:
        return "canonical JSON encoding (json)"
    if function.startswith("openssl_"):
        return "sha256 (hash chain, args hash)"
    if "/psycopg" in path:
        return "psycopg (client library, Python)"
    if "/asyncio/" in path or "selectors" in path or function == "epoll.poll":
        return "asyncio event loop (incl. waiting in epoll: the server's reply, a body's thread)"
    if "/aetheris/" in path or path == "<string>":  # <string>: generated dataclass __init__
        return "aetheris runtime (Python)"
    if "/bench/" in path:
        return "the agent's loop and body"
    return "other"


def walk(frame: Any, self_times: Counter[tuple[str, str, int]], kinds: Counter[str]) -> None:
    spent = frame.total_self_time  # the time of its synthetic "[self]" children
    if spent > 0:
        where = (str(frame.function), Path(str(frame.file_path or "?")).name, frame.line_no or 0)
        self_times[where] += spent
        kinds[kind(frame)] += spent
    for child in frame.children:
        if not child.is_synthetic:
            walk(child, self_times, kinds)


def postgres_floor(url: str, commits: int) -> float:
    """µs per bare commit of a pure step on PostgreSQL: the store's own ``commit_step``
    statement (fence, one event), prepared, from a plain synchronous psycopg loop, no runtime
    (``python -m bench.floor`` sets it beside the round trip and the asyncio loop)."""
    asyncio.run(floor_db(url))
    return sync_commits(url, commits)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        from pyinstrument import Profiler  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise SystemExit(
            "python -m bench.profile needs pyinstrument: pip install pyinstrument"
        ) from None
    run = run_w1 if args.workload == "w1" else run_w4
    profiler = Profiler(interval=args.interval, async_mode="disabled")
    floor = fsync = None
    with contextlib.ExitStack() as stack:
        if args.backend == "sqlite":
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="aetheris-profile-"))
            suffix = "" if args.synchronous == "full" else "?synchronous=normal"
            urls = [f"sqlite:///{tmp}/{name}.sqlite{suffix}" for name in ("plain", "profiled")]
            floor, fsync = sqlite_floor(tmp, args.synchronous, min(args.steps, 5_000))
        else:
            urls = [stack.enter_context(fresh_postgres_db("profile")) for _ in range(3)]
            floor = postgres_floor(urls[2], min(args.steps, 5_000))
        plain = asyncio.run(run(urls[0], args.steps))
        began = time.perf_counter()
        profiler.start()
        profiled = asyncio.run(run(urls[1], args.steps))
        profiler.stop()
        wall = time.perf_counter() - began
    session = profiler.last_session
    root = session.root_frame() if session else None
    if root is None:
        raise SystemExit("pyinstrument recorded no samples")
    self_times: Counter[tuple[str, str, int]] = Counter()
    kinds: Counter[str] = Counter()
    walk(root, self_times, kinds)
    total = sum(kinds.values())
    what = (
        f"W1, {args.steps} x await ctx.step('s', ainc, i)"
        if args.workload == "w1"
        else f"W4, {args.steps} turns of model_call(messages) + ctx.step('tool', ...)"
    )
    unit = "step" if args.workload == "w1" else "turn"
    where = (
        f"SQLite synchronous={args.synchronous.upper()}"
        if args.backend == "sqlite"
        else "PostgreSQL (the server's synchronous_commit)"
    )
    print(
        f"{what}, {where}: {plain:.1f} µs/{unit} without the profiler, {profiled:.1f} "
        f"with it (sampling every {args.interval * 1e6:.0f} µs; {wall:.1f} s profiled, start-up "
        "and shutdown included)\n"
    )
    if floor is not None and fsync is not None:
        print(
            f"floor: a bare commit of a pure step's writes (fenced UPDATE + INSERT, no runtime) "
            f"{floor:.1f} µs; the fsync probe (4 KiB write + fsync) p50 {fsync:.1f} µs\n"
        )
    elif floor is not None:
        print(
            f"floor: the commit_step statement alone (fence + one event, prepared) in a bare "
            f"psycopg loop, no runtime: {floor:.1f} µs per commit\n"
        )
    print(f"share of sampled time by kind of work (µs/{unit}: that share of the profiled {unit};")
    print("the profiler's per-call hook inflates Python's share, not the time inside C calls):")
    for name, seconds in kinds.most_common():
        print(f"  {seconds / total:6.1%}  {seconds / total * profiled:7.1f} µs/{unit}  {name}")
    print("\nself time, top 20 functions:")
    for (function, file, line), seconds in self_times.most_common(20):
        print(f"  {seconds / total:6.1%}  {function}  ({file}:{line})")
    print()
    print(profiler.output_text(unicode=True, color=False, show_all=False, time="percent_of_total"))
    if args.html:
        args.html.write_text(profiler.output_html())
        print(f"html: {args.html}")


if __name__ == "__main__":
    main()
