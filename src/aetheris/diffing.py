"""Where two runs differ: their journals compared position by position.

Each position's operation is named by its kind, name and arguments' hash; its output is its
recorded result or error (timings, attempts and keys are left out: they differ between any two
runs). The *first divergence* is the first position where the operations differ (one run did
something else there, or nothing). Positions where the same operation gave another output are
*changed outputs*; a fork with an edited entry shows that entry as one, and what its new value
changed downstream as the divergence and the rows after it. How each run ended (status, result,
error) is compared too. Two runs are the same when no position and no end differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aetheris.journal import Event, EventType, canonical, sha256_hex

_ENDS = {
    EventType.JOB_SUCCEEDED: "succeeded",
    EventType.JOB_FAILED: "failed",
    EventType.JOB_COMPENSATED: "compensated",
    EventType.JOB_CANCELLED: "cancelled",
}


@dataclass(frozen=True, slots=True)
class Entry:
    """One run's operation at a position: what it was and what it gave."""

    kind: str
    name: str
    args_hash: str
    output: dict[str, Any]

    @property
    def operation(self) -> tuple[str, str, str]:
        return self.kind, self.name, self.args_hash

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "args_hash": self.args_hash,
            "output": self.output,
            "output_hash": sha256_hex(canonical(self.output)),
        }


@dataclass(frozen=True, slots=True)
class Row:
    """A position where the runs differ: ``operation`` (another one, or none) or ``output``."""

    position: int
    differs: str
    a: Entry | None
    b: Entry | None

    def to_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "differs": self.differs,
            "a": self.a.to_json() if self.a else None,
            "b": self.b.to_json() if self.b else None,
        }


@dataclass(frozen=True, slots=True)
class RunDiff:
    """The comparison of runs ``a`` and ``b``."""

    a: str
    b: str
    rows: list[Row] = field(default_factory=list)
    end_a: dict[str, Any] | None = None
    end_b: dict[str, Any] | None = None

    @property
    def divergence(self) -> Row | None:
        """The first position where the runs did different operations (or one did none)."""
        return next((r for r in self.rows if r.differs == "operation"), None)

    @property
    def same(self) -> bool:
        return not self.rows and self.end_a == self.end_b

    def to_json(self) -> dict[str, Any]:
        first = self.divergence
        return {
            "a": self.a,
            "b": self.b,
            "same": self.same,
            "first_divergence": first.to_json() if first else None,
            "rows": [r.to_json() for r in self.rows],
            "end": {"a": self.end_a, "b": self.end_b, "same": self.end_a == self.end_b},
        }


def entries(events: Sequence[Event]) -> dict[int, Entry]:
    """Each position's last recorded operation (an ``op`` event) and its output."""
    found: dict[int, Entry] = {}
    for event in events:
        if event.type is not EventType.OP or event.position is None:
            continue
        data = event.data
        error = data.get("error")
        output = {"error": _error(error)} if error is not None else {"result": data.get("result")}
        kind, name = str(data.get("kind")), str(data.get("name"))
        found[event.position] = Entry(kind, name, str(data.get("args_hash", "")), output)
    return found


def _error(error: Any) -> Any:
    """An error without its traceback (the same failure has another one in each run)."""
    if isinstance(error, dict):
        return {k: v for k, v in error.items() if k != "traceback"}
    return error


def ending(events: Sequence[Event]) -> dict[str, Any] | None:
    """How a run ended (its last end event): status, and result or error; ``None``: not yet."""
    for event in reversed(events):
        status = _ENDS.get(event.type)
        if status is not None:
            error = event.data.get("error")
            end: dict[str, Any] = {"status": status, "result": event.data.get("result")}
            if error is not None:
                end["error"] = _error(error)
            return end
    return None


def diff_runs(a: str, events_a: Sequence[Event], b: str, events_b: Sequence[Event]) -> RunDiff:
    """Compare the journals of runs ``a`` and ``b`` (see the module's docstring)."""
    left, right = entries(events_a), entries(events_b)
    rows: list[Row] = []
    for position in sorted(set(left) | set(right)):
        x, y = left.get(position), right.get(position)
        if x is None or y is None or x.operation != y.operation:
            rows.append(Row(position, "operation", x, y))
        elif x.output != y.output:
            rows.append(Row(position, "output", x, y))
    return RunDiff(a, b, rows, ending(events_a), ending(events_b))
