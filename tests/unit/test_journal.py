from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from aetheris.errors import EncodingError
from aetheris.journal import (
    GENESIS_HASH,
    Anchor,
    Event,
    EventDraft,
    EventType,
    Recorded,
    args_hash,
    canonical,
    decode,
    open_event,
    seal,
    verify_chain,
)
from aetheris.positions import JournalIndex


class Color(enum.Enum):
    RED = "red"


class Model(BaseModel):
    b: int
    a: str


@dataclasses.dataclass
class Point:
    y: int
    x: int


def test_canonical_is_sorted_compact_utf8() -> None:
    assert (
        canonical({"b": 1, "a": [1, {"d": None, "c": "é"}]})
        == '{"a":[1,{"c":"é","d":null}],"b":1}'.encode()
    )


def test_canonical_converts_models_dataclasses_enums_dates() -> None:
    value = {
        "m": Model(b=1, a="x"),
        "p": Point(2, 1),
        "c": Color.RED,
        "t": dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
        "tuple": (1, 2),
    }
    assert canonical(value) == (
        b'{"c":"red","m":{"a":"x","b":1},"p":{"x":1,"y":2},'
        b'"t":"2026-01-02T00:00:00+00:00","tuple":[1,2]}'
    )


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {1: "x"}, object(), {"s": {1, 2}}])
def test_canonical_refuses_what_json_cannot_hold(bad: object) -> None:
    with pytest.raises(EncodingError):
        canonical(bad)


@pytest.mark.parametrize(
    "value",
    [
        {"b": [1, 2.5, -0.0, 1e-300, 10**30, -(2**64)], "a": None, "c": True},
        {"text": "caf\u00e9 \u2603 \U0001f600", "big": 2**63, "bigger": 2**64 + 1},
        [1.7976931348623157e308, 5e-324, 0.1, 123456789012345678],
    ],
)
def test_decode_reads_back_what_canonical_wrote(value: object) -> None:
    # orjson reads most bodies; what it refuses (integers beyond 64 bits) json reads: the
    # values are those json alone would give, whichever decoded them.
    body = canonical(value)
    assert decode(body) == json.loads(body) == value
    assert decode(body.decode("utf-8")) == value


@pytest.mark.parametrize(
    "number",
    [2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**19 - 1, 10**19, -(2**63), -(2**63) - 1,
     -(10**19) + 1, -(2**64)],
)  # fmt: skip
def test_decode_keeps_an_integer_an_integer_at_the_edges_of_64_bits(number: int) -> None:
    # orjson reads an integer outside its 64-bit ranges as a float: -(2**63) - 1 has only 19
    # digits, and 2**64 as a float still compares equal, so the type is checked too.
    for body in (canonical([number]), canonical({"r": number, "at": 1.5})):
        decoded = decode(body)
        value = decoded[0] if isinstance(decoded, list) else decoded["r"]
        assert type(value) is int and value == number


def test_decode_fails_as_json_does_on_bad_input() -> None:
    with pytest.raises(json.JSONDecodeError):
        decode(b'{"a": ')
    assert decode(b"[NaN]")[0] != decode(b"[NaN]")[0]  # json's NaN literal, still read


def test_args_hash_is_stable_and_distinguishes_args() -> None:
    assert args_hash([1], {"a": 2}) == args_hash((1,), {"a": 2})
    assert args_hash([1], {"a": 2}) != args_hash([2], {"a": 1})
    assert len(args_hash([], {})) == 64


def _every_code_point() -> list[str]:
    """Every Unicode code point but NUL and the lone surrogates, in strings of 4,096."""
    points = [c for c in range(1, 0x110000) if not 0xD800 <= c <= 0xDFFF]
    return ["".join(map(chr, points[i : i + 4096])) for i in range(0, len(points), 4096)]


@pytest.mark.parametrize(
    "values",
    [
        [_every_code_point()[0]],  # the control characters and their escapes
        _every_code_point(),
        [0, -1, 2**63 - 1, -(2**63), 2**64 - 1, True, False, None, "", '"\\/'],
        [2**64, -(2**63) - 1],  # beyond 64 bits: orjson refuses them, canonical JSON does not
        ["a\u2028b\u2029c\x7f"],
        [1e16, 1.5e-7, 0.1, -0.0],  # orjson writes 1e16 and 1.5e-7: floats keep json's path
    ],
    ids=["controls", "every-code-point", "scalars", "big-ints", "separators", "floats"],
)
def test_args_hash_is_the_hash_of_the_canonical_bytes(values: list[object]) -> None:
    # Arguments of plain scalar types take a faster encoder: its bytes must be canonical JSON's,
    # or a journal written before it would no longer match its own code on replay.
    expected = hashlib.sha256(canonical({"args": values, "kwargs": {}})).hexdigest()
    assert args_hash(values, {}) == expected


# What canonical JSON has always been: json's encoder, keys sorted, compact, UTF-8. A faster
# encoder writes most values; it must write these bytes, or a journal written before it would
# no longer match its own code (args hashes, conversation hashes) on replay.
_JSON_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def _as_json_writes(value: object) -> bytes:
    return _JSON_ENCODER.encode(value).encode("utf-8")


_FLOATS = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [1e-4, 9.999999999999999e-05, 1e-5, 1.5e-7, 1e-9, 1e-10, 1e15, 1e16, 1.5e16, 5e-324, -0.0]
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | _FLOATS
    | st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]))
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(
            st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"])),
            inner,
            max_size=4,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=500)
@given(_VALUES)
def test_canonical_writes_the_bytes_json_always_wrote(value: object) -> None:
    expected = _as_json_writes(value)
    assert canonical(value) == expected
    draft = EventDraft(EventType.OP, {"result": value}, 0)
    event = seal("j", 1, GENESIS_HASH, draft, 1.5)
    assert event.body == _as_json_writes(
        {"at": 1.5, "data": {"result": value}, "job_id": "j", "position": 0, "seq": 1, "type": "op"}
    )


def test_canonical_writes_every_code_point_as_json_does() -> None:
    for text in _every_code_point():
        value = {text: [text, {"k": text}], text[::-1]: text[: len(text) // 2]}
        assert canonical(value) == _as_json_writes(value)


@pytest.mark.parametrize(
    "bad",
    [{"a": float("nan")}, [float("inf")], {"a": ["x\x00"]}, {"a": "\udc00"}, {"a": {1: 2}}],
    ids=["nan", "inf", "nul", "lone-surrogate", "int-key"],
)
def test_canonical_refuses_inside_containers_what_json_refuses(bad: object) -> None:
    with pytest.raises(EncodingError):
        canonical(bad)


@pytest.mark.parametrize("bad", [["a\x00b"], ["\ud800"]], ids=["nul", "lone-surrogate"])
def test_args_hash_refuses_what_no_store_keeps(bad: list[object]) -> None:
    with pytest.raises(EncodingError):
        args_hash(bad, {})


def _entries(*entries: tuple[EventType, int | None, dict[str, Any]]) -> list[Event]:
    """Sealed events of (type, position, data), chained in this order."""
    events, prev = [], GENESIS_HASH
    for seq, (kind, position, data) in enumerate(entries):
        event = seal("j", seq, prev, EventDraft(kind, data, position), 1.0)
        events.append(event)
        prev = event.hash
    return events


def test_the_journal_index_holds_the_most_telling_entry_of_each_position() -> None:
    op = {"kind": "tool", "name": "pay", "args_hash": "h", "result": 1}
    intent = {"kind": "tool", "name": "pay", "args_hash": "h"}
    wait, later_wait = {"kind": "signal", "name": "go"}, {"kind": "signal", "name": "go", "n": 2}
    index = JournalIndex.read(
        _entries(
            (EventType.JOB_CREATED, None, {}),
            (EventType.WAIT, 0, wait),
            (EventType.WAIT, 0, later_wait),  # the last of a kind at a position wins
            (EventType.OP, 1, op),
            (EventType.INTENT, 1, intent),  # an intent after the result does not hide it
            (EventType.INTENT, 2, intent),
            (EventType.WAIT, 2, wait),  # nor a wait after an intent
        )
    )
    at = {p: index.at(p) for p in range(4)}
    assert [(e.holds, e.data) if e else None for e in at.values()] == [
        ("a wait that began", later_wait),
        ("a recorded result", op),
        ("an effect intent (dispatched, outcome not recorded)", intent),
        None,
    ]
    assert [index.entry(p) for p in range(4)] == [later_wait, op, intent, None]
    assert index.positions() == {0, 1, 2} and index.last() == 2
    assert JournalIndex.read(_entries((EventType.JOB_CREATED, None, {}))).last() == -1
    assert JournalIndex.read(_entries((EventType.INTENT, 7, intent))).last() == 7
    assert [index.op(p) for p in range(3)] == [None, op, None]
    assert [index.wait(p) for p in range(3)] == [later_wait, None, wait]
    assert index.may_hold("signal") and index.may_hold("tool") and not index.may_hold("child")


def test_a_child_at_position_zero_is_held() -> None:
    child = {"kind": "child", "name": "helper", "args_hash": "h"}
    assert JournalIndex.read(_entries((EventType.WAIT, 0, child))).may_hold("child")


def test_a_value_that_only_names_a_kind_is_not_an_entry_of_it() -> None:
    # The stored bytes are searched: a string holding the words is escaped there.
    said = {"kind": "tool", "name": "t", "args_hash": "h", "result": '"kind":"child"'}
    assert not JournalIndex.read(_entries((EventType.OP, 0, said))).may_hold("child")


def test_a_recorded_entry_is_decoded_when_asked_for_each_time() -> None:
    # A resume holds the stored bytes; what a position holds is decoded when it is replayed,
    # and not kept: the index holds no decoded data.
    event = _entries((EventType.OP, 0, {"kind": "step", "name": "s", "result": [1]}))[0]
    read = Recorded.stored(event.seq, event.type.value, event.position, event.body)
    index = JournalIndex.read([read])
    first, again = index.op(0), index.op(0)
    assert first == again == event.data and first is not again
    assert (read.at, read.type, read.position) == (event.at, event.type, event.position)


def chain(n: int) -> list[Event]:
    events, prev = [], GENESIS_HASH
    for seq in range(n):
        event = seal("j", seq, prev, EventDraft(EventType.OP, {"i": seq}, seq), 1.0)
        events.append(event)
        prev = event.hash
    return events


def test_chain_verifies_over_stored_bytes() -> None:
    events = chain(5)
    reopened = [open_event("j", e.seq, e.body, e.prev_hash, e.hash) for e in events]
    report = verify_chain("j", reopened)
    assert report.ok and report.events == 5 and report.head == events[-1].hash


def test_a_reopened_event_is_the_event_sealed_and_as_frozen() -> None:
    anchor = Anchor("key-1", "c2ln")
    sealed = dataclasses.replace(chain(3)[2], anchor=anchor)
    reopened = open_event("j", 2, sealed.body, sealed.prev_hash, sealed.hash, anchor)
    assert reopened == sealed
    assert [getattr(reopened, f.name) for f in dataclasses.fields(Event)] == [
        getattr(sealed, f.name) for f in dataclasses.fields(Event)
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        reopened.seq = 7  # type: ignore[misc]


def test_chain_detects_a_changed_byte() -> None:
    events = chain(4)
    tampered = events[2].body.replace(b'"i":2', b'"i":7')
    events[2] = open_event("j", 2, tampered, events[2].prev_hash, events[2].hash)
    report = verify_chain("j", events)
    assert not report.ok and report.seq == 2 and "hash" in (report.problem or "")


def test_chain_detects_a_removed_event() -> None:
    events = chain(4)
    del events[1]
    report = verify_chain("j", events)
    assert not report.ok and report.seq == 2
