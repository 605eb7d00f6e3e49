"""What a journal holds by position: the index a run replays from, read once at its claim."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aetheris.journal import EventLike, EventType, canonical

_HOLDS = (  # what a position's most telling entry is: an op, else an intent, else a wait
    "a recorded result",
    "an effect intent (dispatched, outcome not recorded)",
    "a wait that began",
)


@dataclass(frozen=True, slots=True)
class Entry:
    """The operation a journal position names (``data``: its entry's), whatever kind of
    entry names it (``holds``: which)."""

    data: Mapping[str, Any]
    holds: str

    @property
    def kind(self) -> str | None:
        return self.data.get("kind")

    @property
    def name(self) -> str | None:
        return self.data.get("name")

    def shown(self) -> dict[str, Any]:
        return {key: self.data.get(key) for key in ("kind", "name", "args_hash")}


def names_op(data: Mapping[str, Any], kind: str, name: str, digest: str) -> bool:
    """Whether a journal entry's data names this operation. A wait journaled before waits
    named their operation (no ``kind``) cannot be compared."""
    recorded = data.get("kind")
    return recorded is None or (
        recorded == kind and data.get("name") == name and data.get("args_hash") == digest
    )


@dataclass(slots=True)
class JournalIndex:
    """What a journal holds by position, read in one pass at the claim: its entries by kind of
    entry (the last of a kind at a position wins). A resume reads every entry of the journal,
    so nothing is decoded or built per entry here: an entry's data is read when its position
    is asked for (a :class:`Recorded` decodes it then), records are made by :meth:`at`, and an
    ``op`` entry's :class:`OpRecord` when it is replayed."""

    ops: dict[int, EventLike]
    intents: dict[int, EventLike]
    waits: dict[int, EventLike]

    @classmethod
    def read(cls, events: Sequence[EventLike]) -> JournalIndex:
        journal = cls({}, {}, {})
        kinds = (EventType.OP, EventType.INTENT, EventType.WAIT)  # the order of _tables()
        by_type = dict(zip(kinds, journal._tables(), strict=True))
        for event in events:
            position, entries = event.position, by_type.get(event.type)
            if position is not None and entries is not None:
                entries[position] = event
        return journal

    def _tables(self) -> tuple[dict[int, EventLike], ...]:
        """The entries by kind, most telling first (in the order of ``_HOLDS``)."""
        return self.ops, self.intents, self.waits

    def op(self, position: int) -> dict[str, Any] | None:
        """The data of the result recorded at ``position``, if any."""
        event = self.ops.get(position)
        return None if event is None else event.data

    def wait(self, position: int) -> dict[str, Any] | None:
        """The data of the last wait that began at ``position``, if any."""
        event = self.waits.get(position)
        return None if event is None else event.data

    def _find(self, position: int) -> tuple[int, dict[str, Any]] | None:
        """The most telling entry at ``position``: its kind's rank and its data."""
        for rank, entries in enumerate(self._tables()):
            event = entries.get(position)
            if event is not None:
                return rank, event.data
        return None

    def entry(self, position: int) -> Mapping[str, Any] | None:
        """The data of the most telling entry at ``position`` (see :meth:`at`)."""
        found = self._find(position)
        return None if found is None else found[1]

    def at(self, position: int) -> Entry | None:
        """The most telling entry at ``position``: a result, else an intent, else a wait."""
        found = self._find(position)
        return None if found is None else Entry(found[1], _HOLDS[found[0]])

    def may_hold(self, kind: str) -> bool:
        """Whether an entry may be of an operation of ``kind``, from the stored bytes, without
        decoding them: each such entry holds ``"kind":"<kind>"`` (canonical JSON, and never
        sealed by a codec), and rarely a value does too (a mapping with that key), so a caller
        acts on a yes in a way that is harmless when there is none."""
        needle = b'"kind":' + canonical(kind)
        return any(needle in e.body for entries in self._tables() for e in entries.values())

    def positions(self) -> set[int]:
        return self.ops.keys() | self.intents.keys() | self.waits.keys()

    def last(self) -> int:
        """The highest position the journal holds (-1: none), without building
        :meth:`positions` (a resume of 10,000 entries asks it once)."""
        return max(max(table, default=-1) for table in self._tables())
