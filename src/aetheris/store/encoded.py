"""The store port seen through a payload codec and the secret-field marks.

:class:`EncodedStore` wraps any store: on the way in it marks secret fields (see
:mod:`aetheris.redaction`) and encodes payloads with the App's codec (see
:mod:`aetheris.codec`); on the way out it decodes them and reveals or redacts the marks. The
runtime, the scheduler and the three stores are unaware of both.

What is encoded: a job's input, result, error (all but its ``type``) and the ``payload`` of
its park detail; in events the same values (``input``, ``result``, ``error``, ``payload``,
``output``, ``comment``, and those inside a ``detail``); ledger rows' results and errors;
signals' payloads; blobs. What stays in the clear is what the runtime and ``verify`` need:
types, positions, names, ordinals, args hashes (of the plaintext, as without a codec),
statuses, keys, hashes. An encoded value is ``{"$codec": base64}`` (an error keeps ``type``
beside it). Events are sealed over the encoded bytes, so the hash chain, anchors and ``verify``
work without any key; the same value under the same key encodes to the same bytes, so a job's
row still matches its journal.

A payload whose key was destroyed reads as ``"[shredded]"`` (an error as its type with that
message); a missing or wrong key is an error that says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from aetheris.codec import (
    KEY_DIR_ENV,
    SHREDDED,
    PayloadCodec,
    PayloadScope,
    ShreddingCodec,
    from_text,
    to_text,
)
from aetheris.errors import ConfigurationError, IdempotencyConflict, PayloadShredded
from aetheris.journal import Event, EventDraft, EventType, Recorded, canonical, decode, to_jsonable
from aetheris.redaction import SECRET, View, mark, unmark
from aetheris.store.port import (
    Claim,
    ClaimFilter,
    Commit,
    Delivery,
    Effect,
    EffectWrite,
    ForkedJob,
    Guard,
    Job,
    JobStatus,
    Lease,
    NewJob,
    Signal,
    StatusWrite,
    Store,
)

CODEC = "$codec"
# What a stored event's bytes hold when it has something to decode (a resume asks of each).
_CODEC_KEY, _SECRET_KEY = (f'"{key}"'.encode() for key in (CODEC, SECRET))
# The first character of every mark's key: bytes without it hold no mark, and one memchr tells.
_MARKED = b"$"
assert all(key.startswith(_MARKED.decode()) for key in (CODEC, SECRET))
ENCRYPTED = "[encrypted]"  # an encoded payload, read where no codec is configured
SEALED = ("input", "result", "payload", "output", "comment")
Secrets = Callable[[str, str], frozenset[str]]  # ("tool" | "agent", name) -> secret fields


def no_secrets(kind: str, name: str) -> frozenset[str]:
    return frozenset()


class Payloads:
    """Encoding and decoding of one kind of value, for one reader's view."""

    def __init__(self, codec: PayloadCodec | None, view: View, secrets: Secrets) -> None:
        self.codec = codec
        self.view = view
        self.secrets = secrets

    # -- writing ------------------------------------------------------------------------------

    def value(self, value: Any, scope: PayloadScope) -> Any:
        if self.codec is None or value is None:
            return value
        return {CODEC: to_text(self.codec.encode(canonical(value), scope))}

    def error(self, error: Mapping[str, Any] | None, scope: PayloadScope) -> Any:
        if self.codec is None or error is None:
            return error
        rest = {k: v for k, v in error.items() if k != "type"}
        return {"type": error.get("type"), **self.value(rest, scope)}

    def data(self, data: Mapping[str, Any], scope: PayloadScope) -> dict[str, Any]:
        """Event data or a park detail, its payload-bearing fields encoded."""
        out = dict(data)
        for key in SEALED:
            if out.get(key) is not None:
                out[key] = self.value(out[key], scope)
        if isinstance(out.get("error"), Mapping):
            out["error"] = self.error(out["error"], scope)
        if isinstance(out.get("detail"), Mapping):
            out["detail"] = self.data(out["detail"], scope)
        return out

    def blob(self, body: bytes, scope: PayloadScope) -> bytes:
        if self.codec is None:
            return body
        return canonical({CODEC: to_text(self.codec.encode(body, scope))})

    # -- secret marks, by the declarations of the App that writes ----------------------------

    def marked(self, draft: EventDraft, agent: str) -> Mapping[str, Any]:
        """An event's data with the declared secret fields marked: a tool's result, the
        agent's result, the arguments of a tool call awaiting approval."""
        data, names = draft.data, frozenset[str]()
        if draft.type is EventType.OP and data.get("kind") == "tool":
            names = self.secrets("tool", str(data.get("name")))
        elif draft.type is EventType.JOB_SUCCEEDED:
            names = self.secrets("agent", agent)
        out = dict(data)
        if names and "result" in out:
            out["result"] = mark(out["result"], names)
        detail = out.get("detail")
        if isinstance(detail, Mapping):
            out["detail"] = self.request(detail)
        return out

    def request(self, detail: Mapping[str, Any]) -> Mapping[str, Any]:
        """A park detail with the arguments of a tool call awaiting approval marked."""
        payload = detail.get("payload")
        if not isinstance(payload, Mapping) or not isinstance(payload.get("tool"), str):
            return detail
        names = self.secrets("tool", payload["tool"])
        if not names:
            return detail
        call = {k: mark(v, names) if k in ("args", "kwargs") else v for k, v in payload.items()}
        return {**detail, "payload": call}

    def as_is(self, commit: Commit) -> bool:
        """Whether ``commit`` would be stored exactly as it comes: no codec to encode with, and
        nothing :meth:`marked` or :meth:`request` would mark (operation entries only, none a
        tool's or holding a park detail; no ledger row, status or new job). Most commits of a
        run are such, a step or a model call, and skip rebuilding the commit."""
        if self.codec is not None or commit.effects or commit.status is not None:
            return False
        if commit.create:
            return False
        for draft in commit.events:
            data = draft.data
            if draft.type is not EventType.OP or data.get("kind") == "tool" or "detail" in data:
                return False
        return True

    # -- reading ------------------------------------------------------------------------------

    def read(self, value: Any) -> Any:
        """A stored value as this view shows it."""
        if isinstance(value, dict) and CODEC in value and set(value) <= {CODEC, "type"}:
            opened = self._open(value[CODEC])
            if "type" in value:
                rest = opened if isinstance(opened, dict) else {"message": opened}
                opened = {"type": value["type"], **rest}
            value = opened
        return unmark(value, self.view)

    def _open(self, text: str) -> Any:
        if self.codec is None:
            return self._no_codec()
        try:
            return decode(self.codec.decode(from_text(text)))
        except PayloadShredded:
            return SHREDDED

    def _no_codec(self) -> str:
        """An encoded payload read without a codec: people see that it is encrypted; the
        runtime stops, rather than run a job on ciphertext or write its results in clear."""
        if self.view == "redact":
            return ENCRYPTED
        raise ConfigurationError(
            "this database holds encrypted payloads and this App has no payload codec: set "
            f"{KEY_DIR_ENV} (or App(codec=...)) to the key folder they were written with"
        )

    def read_data(self, data: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(data)
        for key in (*SEALED, "error"):
            if out.get(key) is not None:
                out[key] = self.read(out[key])
        if isinstance(out.get("detail"), Mapping):
            out["detail"] = self.read_data(out["detail"])
        return out

    def read_blob(self, body: bytes) -> bytes:
        if not body.startswith(b'{"' + CODEC.encode()):
            return body
        if self.codec is None:
            return canonical(self._no_codec())
        try:
            return self.codec.decode(from_text(decode(body)[CODEC]))
        except PayloadShredded:
            return canonical(SHREDDED)

    def plain(self, body: bytes) -> bool:
        """Whether an event's stored bytes hold nothing to decode for this view."""
        if _MARKED not in body:  # most bodies
            return True
        return _CODEC_KEY not in body and (self.view == "keep" or _SECRET_KEY not in body)

    def event(self, event: Event) -> Event:
        if self.plain(event.body):
            return event
        return dataclasses.replace(event, data=self.read_data(event.data))

    def journal(self, records: list[Recorded]) -> list[Recorded]:
        """The journal a run reads, an entry that may hold a mark opened for this view as the
        run reaches it. Every mark's key begins with ``$``, which one ``memchr`` finds: a
        10,000-step journal is looked through in about a millisecond, where joining its bytes
        (first-touched memory) and searching them for the keys cost 5 ms of each resume."""
        reader = self._opened
        for record in records:
            if _MARKED in record.body:
                record.reader = reader
        return records

    def _opened(self, body: bytes, data: dict[str, Any]) -> dict[str, Any]:
        return data if self.plain(body) else self.read_data(data)

    def events(self, events: list[Event]) -> list[Event]:
        """:meth:`event` of each. Most journals hold nothing to decode, and one search of all
        their bytes tells (a key cannot span two bodies: each is a JSON object): 3 ms for a
        journal of 10,000 steps against 6 searching each event's."""
        if self.plain(b"".join(e.body for e in events)):
            return events
        return [self.event(e) for e in events]

    def job(self, job: Job) -> Job:
        return dataclasses.replace(
            job,
            input=self.read(job.input),
            result=self.read(job.result),
            error=self.read(job.error),
            park_detail=None if job.park_detail is None else self.read_data(job.park_detail),
        )


class EncodedStore:
    """A store seen through :class:`Payloads` (see the module's docstring). Every method the
    port has and this class does not define goes to the wrapped store unchanged."""

    def __init__(self, inner: Store, payloads: Payloads) -> None:
        self.inner = inner
        self.payloads = payloads
        self._jobs: dict[str, tuple[str, str]] = {}  # job id -> (tenant, agent)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"<EncodedStore {self.payloads.view} of {self.inner!r}>"

    def _seen(self, job: Job) -> Job:
        if len(self._jobs) > 10_000:
            self._jobs.clear()
        self._jobs[job.id] = (job.tenant, job.agent)
        return self.payloads.job(job)

    async def _owner(self, job_id: str) -> tuple[str, str]:
        if job_id not in self._jobs:
            job = await self.inner.get_job(job_id)
            if job is not None:
                self._jobs[job.id] = (job.tenant, job.agent)
        return self._jobs.get(job_id, ("", ""))

    # -- writes ---------------------------------------------------------------------------------

    def _new(self, new: NewJob) -> NewJob:
        scope = PayloadScope(new.tenant, new.id)
        self._jobs[new.id] = (new.tenant, new.agent)
        names = self.payloads.secrets("agent", new.agent)
        changes: dict[str, Any] = {
            "input": self.payloads.value(mark(to_jsonable(new.input), names), scope)
        }
        if isinstance(new, ForkedJob):
            changes["journal"] = self._commit(new.journal, scope, new.agent)
        return dataclasses.replace(new, **changes)

    def _commit(self, commit: Commit, scope: PayloadScope, agent: str) -> Commit:
        p = self.payloads
        events = [
            EventDraft(d.type, p.data(p.marked(d, agent), scope), d.position) for d in commit.events
        ]
        effects = [self._effect(write, scope) for write in commit.effects]
        status = commit.status
        if status is not None:
            names = p.secrets("agent", agent)
            detail = status.park_detail
            status = dataclasses.replace(
                status,
                result=p.value(mark(status.result, names), scope),
                error=p.error(status.error, scope),
                park_detail=None if detail is None else p.data(p.request(detail), scope),
            )
        return dataclasses.replace(
            commit,
            events=events,
            effects=effects,
            status=status,
            create=[self._new(new) for new in commit.create],
            blobs=[(digest, p.blob(body, scope)) for digest, body in commit.blobs],
        )

    def _effect(self, write: EffectWrite, scope: PayloadScope) -> EffectWrite:
        result = mark(write.result, self.payloads.secrets("tool", write.tool))
        return dataclasses.replace(
            write,
            result=self.payloads.value(result, scope),
            error=self.payloads.error(write.error, scope),
        )

    async def create_job(self, new: NewJob) -> tuple[Job, bool]:
        try:
            job, created = await self.inner.create_job(self._new(new))
        except IdempotencyConflict:
            # Keys per job: the same input encodes differently under the new id's key, so
            # the request is compared with the job found in the clear.
            found = await self._keyed(new)
            if found is None:
                raise
            return found, False
        return self._seen(job), created

    async def _keyed(self, new: NewJob) -> Job | None:
        if new.idempotency_key is None or self.payloads.codec is None:
            return None
        found = await self.inner.list_jobs(
            idempotency_key=new.idempotency_key, tenant=new.tenant, limit=1
        )
        if not found:
            return None
        reveal = Payloads(self.payloads.codec, "reveal", self.payloads.secrets)
        same = reveal.read(found[0].input) == to_jsonable(new.input)
        return self._seen(found[0]) if same and found[0].agent == new.agent else None

    async def commit(self, lease: Lease, commit: Commit) -> list[Event]:
        if self.payloads.as_is(commit):
            return await self.inner.commit(lease, commit)  # nothing to encode or mark
        tenant, agent = await self._owner(lease.job_id)
        encoded = self._commit(commit, PayloadScope(tenant, lease.job_id), agent)
        sealed = await self.inner.commit(lease, encoded)
        if self.payloads.view == "reveal" and len(sealed) == len(commit.events):
            # What the writer wrote is what it reads back: no need to decrypt it again.
            return [
                dataclasses.replace(e, data=dict(d.data))
                for e, d in zip(sealed, commit.events, strict=True)
            ]
        return [self.payloads.event(e) for e in sealed]

    async def apply(self, job_id: str, commit: Commit, guard: Guard) -> Job:
        tenant, agent = await self._owner(job_id)
        encoded = self._commit(commit, PayloadScope(tenant, job_id), agent)
        return self._seen(await self.inner.apply(job_id, encoded, guard))

    async def send_signal(
        self, job_id: str, name: str, payload: Any, signal_id: str, sender: str | None
    ) -> tuple[Signal, bool]:
        tenant, _ = await self._owner(job_id)
        value = self.payloads.value(to_jsonable(payload), PayloadScope(tenant, job_id))
        signal, created = await self.inner.send_signal(job_id, name, value, signal_id, sender)
        return self._signal(signal), created

    async def deliver_keyed(
        self, tenant: str, name: str, key: str, payload: Any, signal_id: str, sender: str | None
    ) -> Delivery:
        value = self.payloads.value(to_jsonable(payload), PayloadScope(tenant, None))
        return await self.inner.deliver_keyed(tenant, name, key, value, signal_id, sender)

    # -- reads ----------------------------------------------------------------------------------

    def _signal(self, signal: Signal) -> Signal:
        return dataclasses.replace(signal, payload=self.payloads.read(signal.payload))

    async def get_job(self, job_id: str) -> Job | None:
        job = await self.inner.get_job(job_id)
        return None if job is None else self._seen(job)

    async def list_jobs(self, **filters: Any) -> list[Job]:
        return [self._seen(job) for job in await self.inner.list_jobs(**filters)]

    async def claim(self, owner: str, lease_ttl: float, where: ClaimFilter) -> Claim | None:
        while True:
            claim = await self.inner.claim(owner, lease_ttl, where)
            if claim is None or not self._shredded(claim.job):
                break
            await self._end_shredded(claim.lease)
        return None if claim is None else dataclasses.replace(claim, job=self._seen(claim.job))

    def _shredded(self, job: Job) -> bool:
        codec = self.payloads.codec
        scope = PayloadScope(job.tenant, job.id)
        return isinstance(codec, ShreddingCodec) and codec.shredded(scope)

    async def _end_shredded(self, lease: Lease) -> None:
        """A job whose keys were destroyed cannot run (its journal reads ``[shredded]``): it
        fails at once, with an error in clear that says why (it holds nothing of the job)."""
        error = {
            "type": "PayloadShredded",
            "message": "the job's payload keys were destroyed: it can never run again",
        }
        end = EventDraft(EventType.JOB_FAILED, {"error": error})
        await self.inner.commit(
            lease, Commit(events=[end], status=StatusWrite(JobStatus.FAILED, error=error))
        )

    async def control(self, job_id: str, action: Any, by: str | None = None) -> Job:
        return self._seen(await self.inner.control(job_id, action, by))

    async def events(
        self, job_id: str, *, after: int = -1, limit: int | None = None
    ) -> list[Event]:
        found = await self.inner.events(job_id, after=after, limit=limit)
        return self.payloads.events(found)

    async def journal(self, job_id: str) -> list[Recorded]:
        return self.payloads.journal(await self.inner.journal(job_id))

    async def effects(self, **filters: Any) -> list[Effect]:
        p = self.payloads
        return [
            dataclasses.replace(e, result=p.read(e.result), error=p.read(e.error))
            for e in await self.inner.effects(**filters)
        ]

    async def signals(self, job_id: str, *, pending: bool = True) -> list[Signal]:
        return [self._signal(s) for s in await self.inner.signals(job_id, pending=pending)]

    async def blobs(self, job_id: str, hashes: Sequence[str] | None = None) -> dict[str, bytes]:
        found = await self.inner.blobs(job_id, hashes)
        return {digest: self.payloads.read_blob(body) for digest, body in found.items()}


def encoded_store(
    inner: Store, codec: PayloadCodec | None, view: View, secrets: Secrets = no_secrets
) -> Store:
    """``inner`` seen through ``codec`` and the secret marks, as ``view`` shows them."""
    return cast(Store, EncodedStore(inner, Payloads(codec, view, secrets)))
