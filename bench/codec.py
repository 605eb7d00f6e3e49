"""``python -m bench.codec``: what encrypting payloads at rest costs a durable step.

Two Apps on the same backend, one without a codec and one with the built-in
``EncryptionCodec`` (AES-256-GCM, a key per job in a temporary folder); each runs jobs of
``--steps`` steps whose results carry ``--payload`` bytes of text, through a worker, one job
at a time and alternately, so that whatever else the machine does falls on both alike. The
median time per step of each, and their ratio, are what the codec costs; also the bare
encryption and decryption of one payload. ``--backends sqlite,postgres``; ``--json``.
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

from aetheris import App, Context
from aetheris.codec import EncryptionCodec, FileKeyStore, PayloadScope
from aetheris.testing import running_worker

PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def build(url: str, codec: EncryptionCodec | None, payload: int) -> App:
    app = App(url, codec=codec, poll_interval=0.005)
    text = "x" * payload

    @app.agent(name="bench_codec")
    async def steps(ctx: Context, n: int) -> int:
        for i in range(n):
            await ctx.step("s", lambda i=i: {"i": i, "text": text})
        return n

    return app


async def per_step(app: App, steps: int) -> float:
    began = time.perf_counter()
    handle = await app.start("bench_codec", {"n": steps})
    await handle.result(timeout=600)
    return (time.perf_counter() - began) / steps * 1e6


async def measure(backend: str, steps: int, jobs: int, payload: int, pg: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        url = pg if backend == "postgres" else f"sqlite:///{Path(folder) / 'b.db'}"
        codec = EncryptionCodec(FileKeyStore(Path(folder) / "keys"))
        apps = {"plain": build(url, None, payload), "encrypted": build(url, codec, payload)}
        times: dict[str, list[float]] = {name: [] for name in apps}
        try:
            for round_ in range(jobs):
                order = list(apps) if round_ % 2 else list(apps)[::-1]
                for name in order:
                    async with running_worker(apps[name], concurrency=1):
                        times[name].append(await per_step(apps[name], steps))
                print(f"  {backend}: job pair {round_ + 1}/{jobs}", flush=True)
        finally:
            for app in apps.values():
                await app.close()
    plain, encrypted = (statistics.median(times[n]) for n in ("plain", "encrypted"))
    return {
        "backend": backend,
        "steps": steps,
        "jobs": jobs,
        "payload_bytes": payload,
        "us_per_step_plain": round(plain, 1),
        "us_per_step_encrypted": round(encrypted, 1),
        "ratio": round(encrypted / plain, 3),
    }


def crypto_cost(payload: int, rounds: int = 5000) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        codec = EncryptionCodec(FileKeyStore(Path(folder)))
        scope, body = PayloadScope("default", "job-1"), b"x" * payload
        began = time.perf_counter()
        for _ in range(rounds):
            sealed = codec.encode(body, scope)
        encode = (time.perf_counter() - began) / rounds * 1e6
        began = time.perf_counter()
        for _ in range(rounds):
            codec.decode(sealed)
        decode = (time.perf_counter() - began) / rounds * 1e6
    return {"encode_us": round(encode, 1), "decode_us": round(decode, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.codec", description=__doc__)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=6, help="Jobs of each kind (alternated).")
    parser.add_argument("--payload", type=int, default=1024)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    crypto = crypto_cost(args.payload)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    found = [
        asyncio.run(measure(b, args.steps, args.jobs, args.payload, args.pg_url)) for b in backends
    ]
    if args.json:
        print(json.dumps({"crypto": crypto, "backends": found}, indent=1))
        return
    print(
        f"AES-256-GCM, {args.payload} bytes: encrypt {crypto['encode_us']} us, "
        f"decrypt {crypto['decode_us']} us"
    )
    for f in found:
        print(
            f"{f['backend']}: {f['us_per_step_plain']} us per step in clear, "
            f"{f['us_per_step_encrypted']} us encrypted ({f['ratio']}x); median of "
            f"{f['jobs']} jobs of {f['steps']} steps, {f['payload_bytes']}-byte results"
        )


if __name__ == "__main__":
    main()
