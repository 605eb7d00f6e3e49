"""``python -m bench.anchor``: what anchoring costs a commit.

Two stores on the same backend, one without a signing key and one with, each with one claimed
job; ``--commits`` step events are committed to each through the store port (no runner, no
worker: the commit alone), alternately, so that whatever else the machine does falls on both
alike. Each commit is timed (wall and this process's CPU); the medians per commit, and their
difference, are what an anchor costs. Also the bare Ed25519 signature, for reference.
``--backends sqlite,postgres`` (PostgreSQL at ``--pg-url``); ``--json`` for the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from aetheris.anchor import SigningKey
from aetheris.journal import EventDraft, EventType, anchor_statement
from aetheris.store import create_store
from aetheris.store._shared import seal_all
from aetheris.store.port import ClaimFilter, Commit, Head, Lease, NewJob, Store

PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class Writer:
    """One store and one claimed job of its own, committing one step event at a time."""

    def __init__(self, store: Store, lease: Lease, head: Head) -> None:
        self.store, self.lease, self.head = store, lease, head
        self.wall: list[float] = []
        self.cpu: list[float] = []

    @classmethod
    async def open(cls, url: str, signer: SigningKey | None) -> Writer:
        store = create_store(url, signer=signer)
        await store.open()
        agent = f"bench-anchor-{time.monotonic_ns()}"  # no other job is ever claimed here
        await store.create_job(NewJob(agent, agent, {}))
        claim = await store.claim("bench", 3600.0, ClaimFilter([agent]))
        assert claim is not None
        return cls(store, claim.lease, Head(claim.job.event_count, claim.job.head_hash))

    async def commit(self, position: int) -> None:
        data = {"kind": "step", "name": "s", "ordinal": position + 1, "args_hash": "h"}
        draft = EventDraft(EventType.OP, {**data, "result": position}, position)
        wall, cpu = time.perf_counter(), time.process_time()
        sealed = await self.store.commit(self.lease, Commit([draft], head=self.head))
        self.cpu.append((time.process_time() - cpu) * 1e6)
        self.wall.append((time.perf_counter() - wall) * 1e6)
        self.head = Head(self.head.count + 1, sealed[-1].hash)


async def measure(backend: str, commits: int, pg_url: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:

        def url(name: str) -> str:
            return pg_url if backend == "postgres" else f"sqlite:///{Path(folder) / name}.db"

        plain = await Writer.open(url("unsigned"), None)
        signed = await Writer.open(url("anchored"), SigningKey.generate())
        try:
            for position in range(commits):
                for writer in (plain, signed) if position % 2 else (signed, plain):
                    await writer.commit(position)
        finally:
            await plain.store.close()
            await signed.store.close()
    figures: dict[str, Any] = {"backend": backend, "commits": commits}
    for name, writer in (("unsigned", plain), ("anchored", signed)):
        figures[f"wall_us_{name}"] = round(statistics.median(writer.wall), 1)
        figures[f"cpu_us_{name}"] = round(statistics.median(writer.cpu), 1)
    for kind in ("wall", "cpu"):
        added = figures[f"{kind}_us_anchored"] - figures[f"{kind}_us_unsigned"]
        figures[f"{kind}_us_added"] = round(added, 1)
    return figures


def signature_cost(rounds: int = 20000) -> float:
    """Microseconds per bare Ed25519 signature of an anchor statement."""
    key = SigningKey.generate()
    statement = anchor_statement("01a23d44-5410-71b6-9286-5a0cbc33945c", 12, "a" * 64)
    began = time.perf_counter()
    for _ in range(rounds):
        key.sign(statement)
    return (time.perf_counter() - began) / rounds * 1e6


def sealing_cost(rounds: int = 20000) -> dict[str, float]:
    """Microseconds to seal one event, without and with its anchor: all the work an anchor
    adds to a commit but binding two more parameters (alternate blocks, medians)."""
    key = SigningKey.generate()
    draft = EventDraft(EventType.OP, {"kind": "step", "name": "s", "result": 1}, 3)
    times: dict[str, list[float]] = {"unsigned": [], "anchored": []}
    for block in range(20):
        for name, signer in (("unsigned", None), ("anchored", key))[:: 1 if block % 2 else -1]:
            began = time.perf_counter()
            for seq in range(rounds // 20):
                seal_all(
                    "01a23d44-5410-71b6-9286-5a0cbc33945c", seq, "0" * 64, [draft], 1.0, signer
                )
            times[name].append((time.perf_counter() - began) / (rounds // 20) * 1e6)
    return {name: round(statistics.median(found), 1) for name, found in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.anchor", description=__doc__)
    parser.add_argument("--commits", type=int, default=3000)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sign, seal = signature_cost(), sealing_cost()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    found = [asyncio.run(measure(b, args.commits, args.pg_url)) for b in backends]
    if args.json:
        doc = {"ed25519_sign_us": round(sign, 1), "seal_us": seal, "backends": found}
        print(json.dumps(doc, indent=1))
        return
    print(f"Ed25519 signature: {sign:.1f} us")
    print(f"sealing one event: {seal['unsigned']} us, with its anchor {seal['anchored']} us")
    for f in found:
        print(
            f"{f['backend']}: median per commit, wall {f['wall_us_unsigned']} us unsigned, "
            f"{f['wall_us_anchored']} us anchored (+{f['wall_us_added']}); CPU "
            f"{f['cpu_us_unsigned']} us unsigned, {f['cpu_us_anchored']} us anchored "
            f"(+{f['cpu_us_added']}); {f['commits']} commits each"
        )


if __name__ == "__main__":
    main()
