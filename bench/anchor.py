"""``python -m bench.anchor``: what anchoring costs a commit.

One job, ``--commits`` commits of one step event each, written straight through the store port
(no runner, no worker: the commit alone), once by a store without a signing key and once by a
store with one; the difference per commit is what an anchor costs. Also the bare Ed25519
signature, for reference. ``--backends sqlite,postgres`` (PostgreSQL at ``--pg-url``).

Prints one line per backend and, with ``--json``, a JSON document of the figures.
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
from aetheris.store.port import ClaimFilter, Commit, Head, NewJob

PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


async def commits_per_second(url: str, signer: SigningKey | None, commits: int) -> float:
    """Microseconds per commit of a lone job's step events."""
    store = create_store(url, signer=signer)
    await store.open()
    try:
        job_id = f"bench-{time.monotonic_ns()}"
        await store.create_job(NewJob(job_id, "bench", {}))
        claim = await store.claim("bench", 600.0, ClaimFilter(["bench"]))
        assert claim is not None
        assert claim.job.id == job_id
        head = Head(claim.job.event_count, claim.job.head_hash)
        began = time.perf_counter()
        for position in range(commits):
            data = {"kind": "step", "name": "s", "ordinal": position + 1, "args_hash": "h"}
            draft = EventDraft(EventType.OP, {**data, "result": position}, position)
            sealed = await store.commit(claim.lease, Commit([draft], head=head))
            head = Head(head.count + 1, sealed[-1].hash)
        return (time.perf_counter() - began) / commits * 1e6
    finally:
        await store.close()


def signature_cost(rounds: int = 20000) -> float:
    key = SigningKey.generate()
    statement = anchor_statement("01a23d44-5410-71b6-9286-5a0cbc33945c", 12, "a" * 64)
    began = time.perf_counter()
    for _ in range(rounds):
        key.sign(statement)
    return (time.perf_counter() - began) / rounds * 1e6


async def measure(backend: str, commits: int, runs: int, pg_url: str) -> dict[str, Any]:
    key = SigningKey.generate()
    plain: list[float] = []
    signed: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        for run in range(runs):
            for signer, into in ((None, plain), (key, signed)):
                url = (
                    pg_url
                    if backend == "postgres"
                    else f"sqlite:///{Path(folder) / f'{run}-{len(into)}.db'}"
                )
                into.append(await commits_per_second(url, signer, commits))
    base, anchored = statistics.median(plain), statistics.median(signed)
    return {
        "backend": backend,
        "commits": commits,
        "runs": runs,
        "us_per_commit_unsigned": round(base, 1),
        "us_per_commit_anchored": round(anchored, 1),
        "us_added": round(anchored - base, 1),
        "percent_added": round((anchored - base) / base * 100, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.anchor", description=__doc__)
    parser.add_argument("--commits", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sign = signature_cost()
    found = [
        asyncio.run(measure(b.strip(), args.commits, args.runs, args.pg_url))
        for b in args.backends.split(",")
    ]
    if args.json:
        print(json.dumps({"ed25519_sign_us": round(sign, 1), "backends": found}, indent=1))
        return
    print(f"Ed25519 signature: {sign:.1f} us")
    for f in found:
        print(
            f"{f['backend']}: {f['us_per_commit_unsigned']} us/commit unsigned, "
            f"{f['us_per_commit_anchored']} us anchored: +{f['us_added']} us "
            f"({f['percent_added']}%), median of {f['runs']} runs of {f['commits']} commits"
        )


if __name__ == "__main__":
    main()
