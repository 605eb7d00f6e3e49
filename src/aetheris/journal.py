"""Journal events: canonical JSON encoding and the hash chain.

Every payload Aetheris stores is canonical JSON: keys sorted, no insignificant whitespace, UTF-8,
no NaN or infinities. Never pickle: a journal must be readable by people and by other languages,
and unpickling database content is code execution.

Each event stores ``hash = sha256(prev_hash || body)`` where ``body`` is the exact byte string
stored. The chain is therefore checked over stored bytes, not over a re-encoding of a parsed
value, so it verifies identically on every backend (a JSONB column would reorder keys and break
it; that is why bodies are stored as bytes).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from aetheris.errors import EncodingError

GENESIS_HASH = "0" * 64


class EventType(enum.StrEnum):
    """What an event records. Operation results are ``op``; the rest is the job's lifecycle."""

    JOB_CREATED = "job_created"
    JOB_CLAIMED = "job_claimed"
    OP = "op"
    INTENT = "intent"
    EFFECT_IN_DOUBT = "effect_in_doubt"
    EFFECT_RESOLVED = "effect_resolved"
    JOB_PARKED = "job_parked"
    JOB_RESUMED = "job_resumed"
    JOB_RELEASED = "job_released"
    WAIT = "wait"  # a durable wait began: its deadline, so a resumed job keeps it
    CONTROL = "control_requested"
    JOB_FORKED = "job_forked"  # an operator forked the job: the new job's id and where
    JOB_SUCCEEDED = "job_succeeded"
    JOB_FAILED = "job_failed"
    JOB_COMPENSATED = "job_compensated"
    JOB_CANCELLED = "job_cancelled"


_PLAIN = frozenset({str, int, float, bool, type(None)})


def to_jsonable(value: Any) -> Any:
    """Convert pydantic models, dataclasses, enums, dates and tuples into plain JSON values,
    with every object's keys in sorted (canonical) order."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        out: dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is not str:
                if not isinstance(key, str):
                    raise EncodingError(
                        f"JSON object keys must be strings, got {type(key).__name__}"
                    )
                key = str(key)
            out[key] = item if type(item) in _PLAIN else to_jsonable(item)
        # Keys in canonical order: a recorded value comes back from canonical JSON sorted, so
        # live code sees dicts in the order a replay will (json.dumps, iteration, ...).
        return out if _sorted(out) else dict(sorted(out.items()))
    if kind is list or kind is tuple:
        return [item if type(item) in _PLAIN else to_jsonable(item) for item in value]
    return _to_jsonable_slow(value)


def _sorted(mapping: dict[str, Any]) -> bool:
    previous = ""
    for key in mapping:
        if key < previous:
            return False
        previous = key
    return True


def _to_jsonable_slow(value: Any) -> Any:
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Mapping):
        return to_jsonable(dict(value))
    if isinstance(value, list | tuple):
        return to_jsonable(list(value))
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return to_jsonable(dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise EncodingError(f"value of type {type(value).__name__} is not JSON-serializable")


def canonical(value: Any) -> bytes:
    """Encode ``value`` as canonical JSON bytes."""
    return _orjson_dumps(value) or _dumps(to_jsonable(value))


# One encoder for every call: json.dumps with options builds a new encoder each time.
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def _dumps(jsonable: Any) -> bytes:
    """Canonical bytes of a value that is already plain JSON (see :func:`to_jsonable`).

    A NUL character (``\\u0000``) is refused on every backend: PostgreSQL cannot store it in
    ``jsonb`` or ``text``, and a value one store keeps and another refuses would make a job's
    fate depend on the database.
    """
    body = _orjson_dumps(jsonable)
    if body is not None:
        return body
    try:
        text = _ENCODER.encode(jsonable)
    except ValueError as exc:
        raise EncodingError(f"value is not canonical JSON: {exc}") from exc
    except TypeError as exc:
        raise EncodingError(f"value is not JSON: {exc}") from exc
    if "\\u0000" in text and _has_nul(jsonable):
        raise EncodingError(
            "value contains a NUL character (\\u0000), which no Aetheris store can keep"
        )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodingError(f"value is not valid Unicode (a lone surrogate): {exc}") from None


# -- the same bytes, ten times faster ------------------------------------------------------------
#
# Every event is sealed and every model call hashes its messages: json's encoder took most of
# that time. orjson writes the same bytes for dicts with string keys (sorted the same way: by
# code point), lists, tuples, strings (every code point was compared), integers, booleans and
# None, and for floats but those of magnitude under 1e-4 (it writes 1e-5 as 0.00001 and 1e-7 as
# 1e-7 where json writes 1e-05 and 1e-07). What it writes otherwise (NaN as null, a subclass, a
# date) or refuses (an integer beyond 64 bits, a lone surrogate) takes json's path, which keeps
# or refuses it with its own error; so does a NUL, refused there.

_SCALARS = frozenset({str, int, bool, type(None)})
_SMALLEST, _LARGEST = 1e-4, 1.7976931348623157e308  # inf and NaN fail the range check too


def _orjson_writes_it(value: Any) -> bool:
    """Whether orjson writes ``value`` exactly as :func:`_dumps` does."""
    try:
        return _same_in_orjson(value)
    except RecursionError:  # nested deeper than the interpreter goes: json's path says so
        return False


def _same_in_orjson(value: Any) -> bool:
    kind = type(value)
    if kind is dict:
        for key in value:
            if type(key) is not str:
                return False
        items: Iterable[Any] = value.values()
    elif kind is list or kind is tuple:
        items = value
    else:
        return kind in _SCALARS or (kind is float and _writes_alike(value))
    for item in items:
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind is float:
            if not _writes_alike(item):
                return False
        elif not _same_in_orjson(item):
            return False
    return True


def _writes_alike(number: float) -> bool:
    return number == 0.0 or _SMALLEST <= abs(number) <= _LARGEST


def _orjson_dumps(value: Any) -> bytes | None:
    """orjson's bytes of ``value`` where they are canonical JSON's; ``None`` where json's path
    must decide (:func:`_orjson_writes_it` says no; a NUL, which it refuses; an integer beyond
    64 bits, which it writes; a lone surrogate, which it refuses)."""
    if not _orjson_writes_it(value):
        return None
    try:
        body = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return None
    return None if b"\\u0000" in body else body


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def check_text(value: str, what: str) -> str:
    """Refuse a name or id no store can keep (a NUL character); return it unchanged."""
    if "\x00" in value:
        raise EncodingError(f"{what} contains a NUL character, which no Aetheris store can keep")
    return value


_DECODER = json.JSONDecoder()


def decode(data: bytes | str) -> Any:
    """Decode bytes written by :func:`canonical`. A resume decodes every event of the journal,
    so the common case goes through orjson (about four times faster than ``json``). Whatever
    orjson reads differently goes to ``json``: a run of 19 digits may be an integer beyond 64
    bits (orjson makes it a float; ``-(2**63) - 1`` has 19 digits), and what orjson refuses (a
    ``NaN``) ``json`` may read."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if _NINETEEN_DIGITS not in raw.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return _DECODER.decode(data if isinstance(data, str) else str(data, "utf-8"))


# Every digit as "0", every other byte as "x": a run of 19 digits is one substring search. An
# integer of 18 digits or fewer is within 64 bits, signed; one of 19 may not be, if negative.
_DIGITS_AS_ZERO = bytes(b"0"[0] if chr(i).isdigit() and i < 128 else b"x"[0] for i in range(256))
_NINETEEN_DIGITS = b"0" * 19


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def args_hash(args: Iterable[Any], kwargs: Mapping[str, Any]) -> str:
    """Hash of a call's arguments, recorded with every operation and bound into approvals."""
    values = args if type(args) is tuple else tuple(args)
    if not kwargs:
        for value in values:
            if type(value) not in _AS_JSON_WRITES:
                break
        else:
            # orjson writes these exactly as canonical() does (every code point was compared)
            # in a tenth of the time; what it refuses (an integer beyond 64 bits, a lone
            # surrogate) and a NUL take the path below, which keeps or refuses it with its own
            # error. A replay hashes every step's arguments again: this is most of its cost.
            try:
                body = b'{"args":%b,"kwargs":{}}' % orjson.dumps(values)
            except orjson.JSONEncodeError:
                body = b"\\u0000"
            if b"\\u0000" not in body:
                return hashlib.sha256(body).hexdigest()
    return sha256_hex(canonical({"args": list(values), "kwargs": dict(kwargs)}))


# Floats are not among them: orjson writes 1e16 where json writes 1e+16.
_AS_JSON_WRITES = frozenset({str, int, bool, type(None)})


def chain_hash(prev_hash: str, body: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + body).hexdigest()


_OP_CORE = frozenset(
    {
        "kind",
        "name",
        "ordinal",
        "args_hash",
        "effect",
        "outcome",
        "result",
        "error",
        "attempts",
        "started_at",
        "duration_ms",
        "idempotency_key",
        "retries",
        "code",
    }
)


@dataclass(slots=True)
class OpRecord:
    """What an ``op`` event records of one durable operation at its position.

    ``kind`` (``tool``, ``step``, ``signal``, ``approval``, ``sleep``, ``child``, ``now``, ...),
    ``name`` and ``args_hash`` identify the operation (replay compares them with the code);
    ``ordinal`` is its number among operations of that name (``pay#2``). Either ``error`` (a
    failure, recorded and raised again on replay) or ``result`` holds. ``extra`` carries what
    one kind records besides (a signal's id, a child's id, a timer's due time, who resolved).

    Read-only by convention, not frozen: a resume builds one per replayed operation, and a
    frozen dataclass's ``__init__`` costs five times as much.
    """

    kind: str
    name: str
    ordinal: int
    args_hash: str
    effect: str = "pure"
    outcome: str = "pure"
    result: Any = None
    error: Mapping[str, Any] | None = None
    attempts: int | None = None
    started_at: float | None = None
    duration_ms: float | None = None
    idempotency_key: str | None = None
    retries: tuple[Mapping[str, Any], ...] = ()
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_data(self) -> dict[str, Any]:
        """The event's data: plain JSON, the same shape whatever kind wrote it."""
        data: dict[str, Any] = {
            "kind": self.kind,
            "name": self.name,
            "ordinal": self.ordinal,
            "args_hash": self.args_hash,
            "effect": self.effect,
            "outcome": self.outcome,
        }
        for key in ("attempts", "started_at", "duration_ms", "idempotency_key"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        if self.error is not None:
            data["error"] = dict(self.error)
        else:
            data["result"] = self.result
        if self.retries:
            data["retries"] = [dict(r) for r in self.retries]
        data.update(self.extra)
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> OpRecord:
        """Read an ``op`` event's data back (journals of every version of this format)."""
        return cls(
            kind=data["kind"],
            name=data["name"],
            ordinal=data.get("ordinal", 1),
            args_hash=data.get("args_hash", ""),
            effect=data.get("effect", "pure"),
            outcome=data.get("outcome", "pure"),
            result=data.get("result"),
            error=data.get("error"),
            attempts=data.get("attempts"),
            started_at=data.get("started_at"),
            duration_ms=data.get("duration_ms"),
            idempotency_key=data.get("idempotency_key"),
            retries=tuple(data.get("retries") or ()),
            extra={}
            if data.keys() <= _OP_CORE
            else {k: v for k, v in data.items() if k not in _OP_CORE},
        )

    def draft(self, position: int) -> EventDraft:
        return EventDraft(EventType.OP, self.to_data(), position)


@dataclass(frozen=True, slots=True)
class EventDraft:
    """An event to append; the store assigns ``seq`` and the hash inside the transaction."""

    type: EventType
    data: Mapping[str, Any]
    position: int | None = None


# The entries that hold a journal position for the code: they record the code version too.
CODED = frozenset({EventType.OP, EventType.INTENT, EventType.WAIT})


def stamp_code(drafts: Iterable[EventDraft], code: str) -> tuple[list[EventDraft], bool]:
    """``drafts`` with ``"code": code`` (the agent version writing them) in the data of each
    entry that holds a position (an operation, an intent, a wait) and names none yet; and
    whether any holds a position.

    Journals written before entries named their code have no such field: they load, replay
    and verify as they are (the chain covers the stored bytes, whatever fields they hold).
    """
    out, coded = [], False
    for draft in drafts:
        if draft.type in CODED:
            coded = True
            if "code" not in draft.data:
                draft = EventDraft(draft.type, {**draft.data, "code": code}, draft.position)
        out.append(draft)
    return out, coded


@dataclass(frozen=True, slots=True)
class Anchor:
    """A signature that vouches for a journal up to one event: an Ed25519 signature, by the
    key ``key_id``, of :func:`anchor_statement` over the event's seq and hash (see
    :mod:`aetheris.anchor`). The store writes one on the last event of each write."""

    key_id: str
    signature: str  # base64 of the 64 signature bytes


def anchor_statement(job_id: str, seq: int, hash_: str) -> bytes:
    """What an anchor signs: the job, and the seq and hash of the event it vouches for. The
    hash chains every event before it, so the signature covers the journal up to there."""
    return _dumps({"aetheris": "anchor/1", "hash": hash_, "job": job_id, "seq": seq})


@dataclass(frozen=True, slots=True)
class Event:
    """A stored journal event (``anchor``: the signature stored with it, if any)."""

    job_id: str
    seq: int
    type: EventType
    position: int | None
    at: float
    data: dict[str, Any]
    prev_hash: str
    hash: str
    body: bytes
    anchor: Anchor | None = None


def seal(job_id: str, seq: int, prev_hash: str, draft: EventDraft, at: float) -> Event:
    """Encode a draft as the exact bytes to store and link it into the chain.

    Draft data is built by the runtime from values already made plain JSON, so it is encoded
    as is (a value that is not JSON still fails, with :class:`EncodingError`).
    """
    data = draft.data if type(draft.data) is dict else dict(draft.data)
    body = _dumps(
        {
            "at": at,
            "data": data,
            "job_id": job_id,
            "position": draft.position,
            "seq": seq,
            "type": draft.type.value,
        }
    )
    return Event(
        job_id=job_id,
        seq=seq,
        type=draft.type,
        position=draft.position,
        at=at,
        data=data,
        prev_hash=prev_hash,
        hash=chain_hash(prev_hash, body),
        body=body,
    )


def open_event(
    job_id: str,
    seq: int,
    body: bytes,
    prev_hash: str,
    stored_hash: str,
    anchor: Anchor | None = None,
) -> Event:
    """Rebuild an :class:`Event` from stored bytes (the hash is checked by :func:`verify_chain`).

    A resume rebuilds every event of the journal, so this one fills the slots of a new
    :class:`Event` itself: the frozen dataclass's ``__init__`` calls ``object.__setattr__`` once
    per field, 1.4 µs an event against 0.7 (12 ms of a 10,000-step resume). The event is the
    same (a test compares it with one built by ``Event(...)``), and as frozen."""
    doc = decode(body)
    kind = doc["type"]
    event = _new_event(Event)
    _job_id(event, job_id)
    _seq(event, seq)
    _type(event, _EVENT_TYPES.get(kind) or EventType(kind))  # a dict lookup: an enum call is slow
    _position(event, doc["position"])
    _at(event, doc["at"])
    _data(event, doc["data"])
    _prev_hash(event, prev_hash)
    _hash(event, stored_hash)
    _body(event, body)
    _anchor(event, anchor)
    return event


_EVENT_TYPES = {t.value: t for t in EventType}
_new_event = object.__new__
# The slot setters of Event's fields, by name: a field added to Event and not set here is
# missing from a stored event, and the test comparing it with Event(...) fails.
_job_id, _seq, _type, _position, _at, _data, _prev_hash, _hash, _body, _anchor = (
    getattr(Event, name).__set__
    for name in (
        "job_id", "seq", "type", "position", "at", "data", "prev_hash", "hash", "body", "anchor"
    )
)  # fmt: skip


class EventLike(Protocol):
    """What a run reads of a journal event: an :class:`Event`, or a :class:`Recorded`."""

    @property
    def seq(self) -> int: ...
    @property
    def type(self) -> EventType: ...
    @property
    def position(self) -> int | None: ...
    @property
    def at(self) -> float: ...
    @property
    def data(self) -> dict[str, Any]: ...
    @property
    def body(self) -> bytes: ...


class Recorded:
    """A journal event as a run reads it at its claim: an :class:`Event` without its place in
    the chain, its time and data decoded from its stored bytes when asked for, each time.

    A run appends at the head its job's row holds and never checks the chain (an audit does,
    from :class:`Event`), and a resume reads every event: the two 64-digit hashes were a
    quarter of the bytes sent. Decoding every event at the claim built the data of the whole
    journal at once, in memory touched for the first time (a page of it costs microseconds on
    a virtual machine); decoded as the replay reaches each one, an entry's data is dropped once
    replayed and the next one reuses its memory. Read-only by convention (see :class:`Slot`)."""

    __slots__ = ("_said", "body", "position", "reader", "seq", "type")

    def __init__(
        self,
        seq: int,
        type: EventType,
        position: int | None,
        body: bytes,
        said: tuple[float, dict[str, Any]] | None = None,
    ) -> None:
        self.seq, self.type, self.position, self.body = seq, type, position, body
        self._said = said  # (at, data) when known already: not decoded again
        # What a store's view does to the data as it is read (see ``Payloads.journal``).
        self.reader: Callable[[bytes, dict[str, Any]], dict[str, Any]] | None = None

    @classmethod
    def stored(cls, seq: int, kind: str, position: int | None, body: bytes) -> Recorded:
        """One from a row of the ``journal`` query."""
        return cls(seq, _EVENT_TYPES.get(kind) or EventType(kind), position, body)

    @property
    def at(self) -> float:
        return self._open()[0]

    @property
    def data(self) -> dict[str, Any]:
        if self._said is None and self.reader is None:  # a replayed step's case: no detour
            data: dict[str, Any] = decode(self.body)["data"]
            return data
        return self._open()[1]

    def _open(self) -> tuple[float, dict[str, Any]]:
        if self._said is not None:
            at, data = self._said
        else:
            doc = decode(self.body)
            at, data = doc["at"], doc["data"]
        reader = self.reader
        return (at, data) if reader is None else (at, reader(self.body, data))

    def __repr__(self) -> str:
        return f"Recorded(seq={self.seq}, type={self.type.value}, position={self.position})"


@dataclass(frozen=True, slots=True)
class ChainReport:
    ok: bool
    events: int
    head: str
    problem: str | None = None
    seq: int | None = None


def verify_chain(job_id: str, events: Iterable[Event]) -> ChainReport:
    """Recompute the chain over the stored bytes; report the first event that does not match."""
    prev = GENESIS_HASH
    count = 0
    for expected_seq, event in enumerate(events):
        count += 1
        doc = decode(event.body)
        problem = None
        if event.seq != expected_seq or doc.get("seq") != expected_seq:
            problem = f"expected seq {expected_seq}, found {event.seq}"
        elif doc.get("job_id") != job_id:
            problem = f"event belongs to job {doc.get('job_id')!r}"
        elif event.prev_hash != prev:
            problem = "prev_hash does not link to the previous event"
        elif chain_hash(prev, event.body) != event.hash:
            problem = "hash does not match the stored bytes"
        if problem:
            return ChainReport(False, count, prev, problem, event.seq)
        prev = event.hash
    return ChainReport(True, count, prev)
