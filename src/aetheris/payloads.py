"""An App's payloads: its codec, its secret fields, the views of its store, crypto-shredding.

An App's store is read through one of four views (:meth:`App.open_store`):

* ``redact`` (the default, for people: the CLI, the HTTP API, the web UI): payloads decoded,
  secret fields ``"[redacted]"``;
* ``reveal`` (the runtime: workers, replay): payloads decoded, secret fields as written;
* ``keep`` (copies into another journal: forks, operators' resolutions): payloads decoded,
  secret fields still marked, so the copy keeps them secret;
* ``raw`` (``verify``, evidence bundles): the stored bytes, ciphertext included, so that they
  verify without a key.

Crypto-shredding (:func:`shred_job`) destroys an ended job's payload keys. Its journal, its
row and its ledger stay as they were: the chain, the anchors and ``verify`` still hold, and
every read shows ``"[shredded]"`` where a payload was. The job can never run again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aetheris.codec import PayloadCodec, PayloadScope, ShreddingCodec
from aetheris.errors import ConfigurationError, Conflict, JobNotFound
from aetheris.redaction import View
from aetheris.store.encoded import encoded_store
from aetheris.store.port import Store

StoreView = View | Literal["raw"]
VIEWS = ("redact", "reveal", "keep", "raw")


class PayloadViews:
    """The views of one App's store, made once each. ``tools`` and ``agents`` are the App's
    registries (read at each write, so what is registered later counts too); each
    definition's ``secret`` names its secret fields."""

    def __init__(
        self, codec: PayloadCodec | None, tools: Mapping[str, Any], agents: Mapping[str, Any]
    ) -> None:
        self.codec = codec
        self._registries = {"tool": tools, "agent": agents}
        self._views: dict[tuple[int, str], Store] = {}

    def secret(self, kind: str, name: str) -> frozenset[str]:
        """The fields ``name`` (a ``tool`` or an ``agent``) declared secret."""
        definition = self._registries[kind].get(name)
        return frozenset(getattr(definition, "secret", ()) or ())

    def of(self, store: Store, view: StoreView) -> Store:
        """``store`` as ``view`` reads it."""
        if view == "raw":
            return store
        if view not in VIEWS:
            raise ConfigurationError(f"unknown store view {view!r}: one of {', '.join(VIEWS)}")
        found = self._views.get((id(store), view))
        if found is None:
            self._views.clear() if len(self._views) > 8 else None
            found = encoded_store(store, self.codec, view, self.secret)
            self._views[(id(store), view)] = found
        return found


@dataclass(frozen=True, slots=True)
class Shredded:
    """What :func:`shred_job` did: the job, and the ids of the keys destroyed (none: they
    were destroyed before, or the job never had a payload encrypted)."""

    job_id: str
    keys: tuple[str, ...]


async def shred_job(store: Store, codec: PayloadCodec | None, job_id: str) -> Shredded:
    """Destroy the payload keys of ``job_id``, which must have ended (a job that may still
    run would find its journal unreadable: cancel it first). Irreversible."""
    if not isinstance(codec, ShreddingCodec):
        raise ConfigurationError(
            "this App has no payload codec that can shred (set AETHERIS_PAYLOAD_KEY_DIR, or "
            "App(codec=EncryptionCodec(FileKeyStore(DIR)))): its payloads are stored as they "
            "are, and no key destroyed can erase them"
        )
    job = await store.get_job(job_id)
    if job is None:
        raise JobNotFound(job_id)
    if not job.status.terminal:
        raise Conflict(
            f"job {job_id} has not ended ({job.status}): cancel it first "
            f"(`aetheris cancel {job_id}`), then shred it"
        )
    return Shredded(job_id, tuple(codec.shred(PayloadScope(job.tenant, job.id))))
