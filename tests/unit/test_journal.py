from __future__ import annotations

import dataclasses
import datetime as dt
import enum

import pytest
from pydantic import BaseModel

from aetheris.errors import EncodingError
from aetheris.journal import (
    GENESIS_HASH,
    EventDraft,
    EventType,
    args_hash,
    canonical,
    open_event,
    seal,
    verify_chain,
)


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


def test_args_hash_is_stable_and_distinguishes_args() -> None:
    assert args_hash([1], {"a": 2}) == args_hash((1,), {"a": 2})
    assert args_hash([1], {"a": 2}) != args_hash([2], {"a": 1})
    assert len(args_hash([], {})) == 64


def chain(n: int) -> list:
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
