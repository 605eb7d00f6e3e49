"""Reading a journal through :class:`Payloads`: what holds nothing encoded comes back as read."""

from __future__ import annotations

from aetheris.journal import GENESIS_HASH, Event, EventDraft, EventType, Recorded, seal
from aetheris.store.encoded import CODEC, ENCRYPTED, Payloads, no_secrets


def journal(*results: object) -> list[Event]:
    events, prev = [], GENESIS_HASH
    for seq, result in enumerate(results):
        event = seal("j", seq, prev, EventDraft(EventType.OP, {"result": result}, seq), 1.0)
        events.append(event)
        prev = event.hash
    return events


def test_a_journal_with_nothing_encoded_is_the_list_read() -> None:
    events = journal(1, {"text": "a $codec in a string is not a key"}, [2])
    assert Payloads(None, "redact", no_secrets).events(events) is events


def test_one_encoded_event_among_plain_ones_is_opened_and_only_it() -> None:
    events = journal(1, {CODEC: "c2VhbGVk"}, 3)
    read = Payloads(None, "redact", no_secrets).events(events)
    assert read[0] is events[0] and read[2] is events[2]
    assert read[1].data["result"] == ENCRYPTED and events[1].data["result"] == {CODEC: "c2VhbGVk"}


def recorded(events: list[Event]) -> list[Recorded]:
    return [Recorded.stored(e.seq, e.type.value, e.position, e.body) for e in events]


def test_a_run_opens_only_the_entries_whose_bytes_may_hold_a_mark() -> None:
    events = journal(1, {CODEC: "c2VhbGVk"}, {"text": "a $codec in a string is not a key"}, 4)
    records = Payloads(None, "redact", no_secrets).journal(recorded(events))
    assert [r.reader is None for r in records] == [True, False, False, True]
    assert records[1].data["result"] == ENCRYPTED
    assert [r.data for r in records[2:]] == [e.data for e in events[2:]]
    assert records[1].data["result"] == ENCRYPTED  # opened again each time it is read
