"""Evidence bundles: a job's record as one self-contained JSON file, checked offline.

A bundle (format ``aetheris-bundle/2``) carries

* ``job``: the job's row as the database showed it;
* ``events``: every event, its exact stored bytes (what the hash chain covers) and its anchor;
* ``effects``: the effects ledger; ``approvals``: each decision on an approval request, who
  decided and when, as the journal recorded it; ``blobs``: the payloads the events refer to;
* ``manifest``: the job id, the head, when it was exported, and the sha256 of each section
  above (of its canonical JSON);
* ``signature`` (optional): an Ed25519 signature of the manifest's canonical JSON, by a key
  given to the exporter (``--sign KEYFILE`` or the exporter's ``AETHERIS_SIGNING_KEY``).

:func:`verify_bundle` needs no database: it checks the manifest's hashes against the sections
(so any changed value in any section is found), the signature against the keys it is given,
and then the job as :func:`aetheris.audit.audit` does: chain, anchors, blobs, the row against
its journal, the ledger against its journal, and the approvals against the journal's.

Bundles are also what ``tests/golden/`` keeps: saved journals of real runs, replayed against
the code in the suite. Format ``aetheris-bundle/1`` (no manifest hashes, no anchors, no
signature) is still read.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aetheris.anchor import SigningKey, TrustedKeys
from aetheris.audit import Verdict, audit
from aetheris.errors import BundleError, JobNotFound
from aetheris.journal import (
    Anchor,
    Event,
    EventType,
    canonical,
    open_event,
    sha256_hex,
    verify_chain,
)
from aetheris.store.port import (
    Effect,
    EffectClass,
    EffectState,
    Job,
    JobStatus,
    ParkReason,
    Store,
)

FORMAT = "aetheris-bundle/2"
FORMAT_1 = "aetheris-bundle/1"
SECTIONS = ("job", "events", "effects", "approvals", "blobs")
_KEYS = frozenset({"format", *SECTIONS, "manifest", "signature"})


@dataclasses.dataclass(frozen=True, slots=True)
class Bundle:
    job: Job
    events: list[Event]
    effects: list[Effect]
    blobs: dict[str, bytes] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class BundleVerdict:
    """What :func:`verify_bundle` found: the job's :class:`~aetheris.audit.Verdict` (its
    ``ok`` is the bundle's), and whether a trusted key signed the manifest (``signed_by``)."""

    verdict: Verdict
    signed_by: str | None = None
    signature_note: str | None = None

    @property
    def ok(self) -> bool:
        return self.verdict.ok


async def export_bundle(
    store: Store, job_id: str, *, signer: SigningKey | None = None, now: float | None = None
) -> dict[str, Any]:
    """The job's bundle, signed by ``signer`` when given."""
    job = await store.get_job(job_id)
    if job is None:
        raise JobNotFound(job_id)
    events = await store.events(job_id)
    sections: dict[str, Any] = {
        "job": _plain(job),
        "events": [_event_doc(e) for e in events],
        "effects": [_plain(e) for e in await store.effects(job_id=job_id)],
        "approvals": approvals(events),
        "blobs": {d: b.decode("utf-8") for d, b in sorted((await store.blobs(job_id)).items())},
    }
    manifest = {
        "format": FORMAT,
        "job_id": job_id,
        "events": len(events),
        "head": job.head_hash,
        "exported_at": time.time() if now is None else now,
        "sha256": {name: sha256_hex(canonical(sections[name])) for name in SECTIONS},
    }
    doc: dict[str, Any] = {"format": FORMAT, **sections, "manifest": manifest}
    return sign_bundle(doc, signer) if signer is not None else doc


def sign_bundle(doc: dict[str, Any], signer: SigningKey) -> dict[str, Any]:
    """Sign (or sign again) a bundle's manifest with ``signer``; returns ``doc``."""
    if doc.get("format") != FORMAT or not isinstance(doc.get("manifest"), dict):
        raise BundleError(f"only an {FORMAT} bundle with a manifest can be signed")
    doc["signature"] = {
        "key_id": signer.key_id,
        "public_key": signer.public.text,
        "signature": signer.sign(canonical(doc["manifest"])),
    }
    return doc


def _event_doc(event: Event) -> dict[str, Any]:
    anchor = None
    if event.anchor is not None:
        anchor = {"key_id": event.anchor.key_id, "signature": event.anchor.signature}
    return {
        "seq": event.seq,
        "body": event.body.decode("utf-8"),
        "prev_hash": event.prev_hash,
        "hash": event.hash,
        "anchor": anchor,
    }


def approvals(events: Sequence[Event]) -> list[dict[str, Any]]:
    """Each decision on an approval request the journal records: what was asked (name, the
    arguments' hash), the decision, who made it and when, and the event that records it."""
    found = []
    for event in events:
        data = event.data
        if event.type is not EventType.OP or data.get("kind") != "approval":
            continue
        result, error = data.get("result") or {}, data.get("error") or {}
        detail = error.get("detail") or {}
        decision = "approved" if data.get("error") is None else "rejected"
        if error.get("type") == "ApprovalTimeout":
            decision = "timed_out"
        found.append(
            {
                "seq": event.seq,
                "position": event.position,
                "name": data.get("name"),
                "args_hash": data.get("args_hash"),
                "decision": decision,
                "by": result.get("by", detail.get("by")),
                "at": result.get("at", detail.get("at")),
                "comment": result.get("comment"),
                "reason": detail.get("reason"),
                "sender": data.get("sender"),
                "signal_id": data.get("signal_id"),
            }
        )
    return found


def _plain(row: Job | Effect) -> dict[str, Any]:
    return {
        key: value.value if isinstance(value, enum.Enum) else value
        for key, value in dataclasses.asdict(row).items()
    }


def parse_bundle(doc: Mapping[str, Any]) -> Bundle:
    """The job, events, ledger and blobs of a bundle (format 1 or 2), not yet verified."""
    if doc.get("format") not in (FORMAT, FORMAT_1):
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
        events = [_event(job.id, e) for e in doc["events"]]
        effects = [
            Effect(**{**e, "effect": EffectClass(e["effect"]), "state": EffectState(e["state"])})
            for e in doc["effects"]
        ]
        blobs = {digest: body.encode("utf-8") for digest, body in doc.get("blobs", {}).items()}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BundleError(f"malformed bundle: {exc!r}") from exc
    return Bundle(job, events, effects, blobs)


def _event(job_id: str, doc: Mapping[str, Any]) -> Event:
    anchor = doc.get("anchor")
    return open_event(
        job_id,
        doc["seq"],
        doc["body"].encode("utf-8"),
        doc["prev_hash"],
        doc["hash"],
        Anchor(str(anchor["key_id"]), str(anchor["signature"])) if anchor else None,
    )


def read_bundle(doc: dict[str, Any]) -> Bundle:
    """Parse a bundle and verify its chain and blobs; raise :class:`BundleError` if they do
    not hold (the full check, anchors and signature included, is :func:`verify_bundle`)."""
    bundle = parse_bundle(doc)
    for digest, body in bundle.blobs.items():
        if sha256_hex(body) != digest:
            raise BundleError(f"blob {digest} does not match its bytes")
    report = verify_chain(bundle.job.id, bundle.events)
    if not report.ok:
        raise BundleError(f"hash chain broken at seq {report.seq}: {report.problem}")
    if report.head != doc.get("manifest", {}).get("head"):
        raise BundleError("the manifest's head hash does not match the last event")
    return bundle


def load_bundle(path: str | Path) -> Bundle:
    return read_bundle(json.loads(Path(path).read_text("utf-8")))


def verify_bundle(doc: Mapping[str, Any], trusted: TrustedKeys) -> BundleVerdict:
    """Check a bundle offline: manifest, signature, then the job as :func:`audit` does."""
    job_id = str((doc.get("manifest") or {}).get("job_id") or (doc.get("job") or {}).get("id"))
    problem = _check_manifest(doc)
    if problem is not None:
        return BundleVerdict(_broken(job_id, "manifest", problem))
    bundle = parse_bundle(doc)
    signed_by, note = None, None
    signature = doc.get("signature")
    if trusted:
        signed_by, problem = _check_signature(doc["manifest"], signature, trusted)
        if problem is not None:
            return BundleVerdict(_broken(job_id, "signature", problem))
    else:
        note = "the bundle's signature was not checked: no trusted public key was given"
        if signature is None:
            note = "the bundle is not signed"
    verdict = audit(bundle.job, bundle.events, bundle.effects, bundle.blobs, trusted)
    if verdict.ok and doc["approvals"] != approvals(bundle.events):
        verdict = _broken(job_id, "approvals", "the approvals are not the journal's decisions")
    return BundleVerdict(verdict, signed_by, note)


def _check_manifest(doc: Mapping[str, Any]) -> str | None:
    if doc.get("format") != FORMAT:
        return f"not an {FORMAT} bundle (format: {doc.get('format')!r}): it has no manifest"
    unknown = sorted(set(doc) - _KEYS)
    missing = sorted(set(_KEYS) - {"signature"} - set(doc))
    if unknown or missing:
        return f"unexpected sections {unknown}, missing sections {missing}"
    manifest = doc["manifest"]
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return "the manifest is not an object naming the bundle's format"
    hashes = manifest.get("sha256") or {}
    for name in SECTIONS:
        if hashes.get(name) != sha256_hex(canonical(doc[name])):
            return f"the {name} section does not match the manifest's hash of it"
    events, job = doc["events"], doc["job"]
    if manifest.get("job_id") != job.get("id") or manifest.get("events") != len(events):
        return "the manifest names another job, or another number of events"
    if manifest.get("head") != (events[-1]["hash"] if events else job.get("head_hash")):
        return "the manifest's head is not the last event's hash"
    return None


def _check_signature(
    manifest: Mapping[str, Any], signature: Any, trusted: TrustedKeys
) -> tuple[str | None, str | None]:
    if not isinstance(signature, dict):
        return None, "the bundle is not signed, and trusted keys were given"
    try:
        anchor = Anchor(str(signature["key_id"]), str(signature["signature"]))
    except KeyError as exc:
        return None, f"the bundle's signature has no {exc}"
    problem = trusted.check(anchor, canonical(manifest))
    if problem is not None:
        return None, f"the bundle's signature: {problem}"
    return anchor.key_id, None


def _broken(job_id: str, check: str, problem: str) -> Verdict:
    return Verdict(job_id, False, 0, "", problem=problem, check=check)


__all__ = [
    "FORMAT",
    "Bundle",
    "BundleVerdict",
    "approvals",
    "export_bundle",
    "load_bundle",
    "parse_bundle",
    "read_bundle",
    "sign_bundle",
    "verify_bundle",
]
