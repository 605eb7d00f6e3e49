"""Export a job's journal as a self-contained JSON bundle, and read one back.

A bundle carries the job, every event with the exact stored bytes that the hash chain covers,
the effects ledger and the job's blobs (canonical JSON, named by their sha256). Reading a
bundle verifies the chain and the blobs first, so a bundle that was edited is refused. Bundles
are what ``aetheris export`` writes and what ``tests/golden/`` keeps: saved journals of real
runs, replayed against the code in the suite.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path
from typing import Any

from aetheris.errors import BundleError, JobNotFound
from aetheris.journal import Event, open_event, sha256_hex, verify_chain
from aetheris.store.port import (
    Effect,
    EffectClass,
    EffectState,
    Job,
    JobStatus,
    ParkReason,
    Store,
)

FORMAT = "aetheris-bundle/1"


@dataclasses.dataclass(frozen=True, slots=True)
class Bundle:
    job: Job
    events: list[Event]
    effects: list[Effect]
    blobs: dict[str, bytes] = dataclasses.field(default_factory=dict)


async def export_bundle(store: Store, job_id: str) -> dict[str, Any]:
    job = await store.get_job(job_id)
    if job is None:
        raise JobNotFound(job_id)
    events = await store.events(job_id)
    effects = await store.effects(job_id=job_id)
    blobs = await store.blobs(job_id)
    return {
        "format": FORMAT,
        "job": _plain(job),
        "events": [
            {"seq": e.seq, "body": e.body.decode("utf-8"), "prev_hash": e.prev_hash, "hash": e.hash}
            for e in events
        ],
        "effects": [_plain(e) for e in effects],
        "blobs": {digest: body.decode("utf-8") for digest, body in sorted(blobs.items())},
        "manifest": {"events": len(events), "head": job.head_hash},
    }


def _plain(row: Job | Effect) -> dict[str, Any]:
    return {
        key: value.value if isinstance(value, enum.Enum) else value
        for key, value in dataclasses.asdict(row).items()
    }


def read_bundle(doc: dict[str, Any]) -> Bundle:
    """Parse a bundle and verify its chain; raise :class:`BundleError` if it does not hold."""
    if doc.get("format") != FORMAT:
        raise BundleError(f"not an {FORMAT} document (format: {doc.get('format')!r})")
    try:
        raw = dict(doc["job"])
        job = Job(
            **{
                **raw,
                "status": JobStatus(raw["status"]),
                "park_reason": ParkReason(raw["park_reason"]) if raw["park_reason"] else None,
            }
        )
        events = [
            open_event(job.id, e["seq"], e["body"].encode("utf-8"), e["prev_hash"], e["hash"])
            for e in doc["events"]
        ]
        effects = [
            Effect(**{**e, "effect": EffectClass(e["effect"]), "state": EffectState(e["state"])})
            for e in doc["effects"]
        ]
        blobs = {digest: body.encode("utf-8") for digest, body in doc.get("blobs", {}).items()}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BundleError(f"malformed bundle: {exc!r}") from exc
    for digest, body in blobs.items():
        if sha256_hex(body) != digest:
            raise BundleError(f"blob {digest} does not match its bytes")
    report = verify_chain(job.id, events)
    if not report.ok:
        raise BundleError(f"hash chain broken at seq {report.seq}: {report.problem}")
    if report.head != doc.get("manifest", {}).get("head"):
        raise BundleError("the manifest's head hash does not match the last event")
    return Bundle(job, events, effects, blobs)


def load_bundle(path: str | Path) -> Bundle:
    return read_bundle(json.loads(Path(path).read_text("utf-8")))
