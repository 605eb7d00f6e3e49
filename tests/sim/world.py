"""The outside world the simulated tools act on: a ledger held by the simulation, not the store.

The store says what the runtime *believes* happened; this ledger says what *did* happen (a charge
went out, a parcel shipped, a compensation ran), so invariants compare the two. Writes are
checked as they happen: a second dispatch of one at-most-once call is reported on the spot.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Dispatch:
    """One call of a side-effecting tool that reached the world."""

    tool: str
    effect: str
    key: str
    job_id: str
    position: int
    label: str
    process: str
    at: float
    result: Any


@dataclass
class World:
    """Everything that happened outside the store, in order; ``report`` receives violations."""

    report: Callable[..., None]
    dispatches: list[Dispatch] = field(default_factory=list)
    by_key: dict[str, list[Dispatch]] = field(default_factory=dict)
    by_label: dict[tuple[str, str], list[Dispatch]] = field(default_factory=dict)
    compensated: dict[str, int] = field(default_factory=dict)
    in_flight: Counter[str] = field(default_factory=Counter)
    in_flight_jobs: Counter[tuple[str, str]] = field(default_factory=Counter)
    version: int = 0

    def dispatch(self, entry: Dispatch) -> None:
        """Record an effect that happened; at-most-once is checked per key and per call site."""
        self.version += 1
        if entry.effect == "at_most_once":
            self._check_once(entry)
        self.dispatches.append(entry)
        self.by_key.setdefault(entry.key, []).append(entry)
        self.by_label.setdefault((entry.job_id, entry.label), []).append(entry)

    def _check_once(self, entry: Dispatch) -> None:
        earlier = self.by_key.get(entry.key, [])
        if earlier:
            self.report(
                "amo_dispatched_twice",
                f"{entry.tool} {entry.key} dispatched again by {entry.process} at "
                f"t={entry.at:.3f} (first by {earlier[0].process} at t={earlier[0].at:.3f})",
                job=entry.job_id,
            )
            return
        same_call = [
            d
            for d in self.by_label.get((entry.job_id, entry.label), [])
            if d.effect == "at_most_once"
        ]
        if same_call:
            self.report(
                "amo_dispatched_twice",
                f"{entry.tool}({entry.label!r}) of job {entry.job_id} dispatched again at position "
                f"{entry.position} by {entry.process} (first at position {same_call[0].position} "
                f"by {same_call[0].process})",
                job=entry.job_id,
            )

    def compensate(self, key: str) -> None:
        """A compensation of the effect ``key`` ran (idempotent: counted, not duplicated)."""
        self.version += 1
        self.compensated[key] = self.compensated.get(key, 0) + 1

    def happened(self, key: str) -> Dispatch | None:
        """The first dispatch of ``key`` that reached the world, if any."""
        found = self.by_key.get(key)
        return found[0] if found else None

    def honest_answer(self, key: str) -> tuple[str, Any]:
        """What an honest observer of the world says about ``key``: committed, not, or unknown.

        ``unknown`` while a call with that key is still in flight somewhere (a paused process
        may yet complete it): saying ``not_executed`` then would invite a second dispatch.
        """
        found = self.happened(key)
        if found is not None:
            return "committed", found.result
        if self.in_flight[key] > 0:
            return "unknown", None
        return "not_executed", None

    def enter(self, key: str, process: str, job_id: str, once: bool) -> None:
        """A tool call began (``once``: an at-most-once one, tracked per job too)."""
        self.in_flight[key] += 1
        if once:
            self.in_flight_jobs[(process, job_id)] += 1

    def leave(self, key: str, process: str, job_id: str, once: bool) -> None:
        """A tool call returned, raised or was cancelled."""
        self.in_flight[key] -= 1
        if once:
            self.in_flight_jobs[(process, job_id)] -= 1

    def running(self, process: str, job_id: str) -> int:
        """How many at-most-once calls of ``job_id`` are in flight in ``process``."""
        return self.in_flight_jobs[(process, job_id)]
