"""Shrinking a failing run: ddmin over its faults and operator actions.

A run's faults are keyed by (site, occurrence #) and its operator actions are drawn in advance,
so any subset of them can be replayed exactly. ``ddmin`` (Zeller and Hildebrandt) removes
chunks while the failure persists, down to a set where removing any single item makes the run
pass: usually one or two faults.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from tests.sim.classify import classify
from tests.sim.config import Action, Fault
from tests.sim.faulty import FaultKey
from tests.sim.sim import SimResult, run_seed

T = TypeVar("T")
Item = tuple[FaultKey, Fault] | Action


def ddmin(items: Sequence[T], fails: Callable[[list[T]], bool], *, budget: int = 300) -> list[T]:
    """A 1-minimal subset of ``items`` on which ``fails`` still holds (within ``budget`` runs)."""
    current, chunks, runs = list(items), 2, 0
    while len(current) >= 2 and runs < budget:
        size = max(1, len(current) // chunks)
        parts = [current[i : i + size] for i in range(0, len(current), size)]
        reduced = False
        for i in range(len(parts)):
            complement = [x for j, part in enumerate(parts) if j != i for x in part]
            runs += 1
            if fails(complement):
                current, chunks, reduced = complement, max(chunks - 1, 2), True
                break
            if runs >= budget:
                break
        if not reduced:
            if chunks >= len(current):
                break
            chunks = min(len(current), chunks * 2)
    if len(current) == 1 and runs < budget and fails([]):
        return []
    return current


@dataclass(frozen=True)
class Reproduction:
    """The smallest plan found that still fails the same way."""

    faults: dict[FaultKey, Fault]
    actions: list[Action]
    result: SimResult
    runs: int


def _split(items: list[Item]) -> tuple[dict[FaultKey, Fault], list[Action]]:
    faults = {i[0]: i[1] for i in items if isinstance(i, tuple)}
    actions = [i for i in items if isinstance(i, Action)]
    return faults, actions


def shrink(result: SimResult, *, budget: int = 300) -> Reproduction:
    """Shrink ``result``'s faults and actions, keeping its first violation's defect and kind."""
    target = result.violations[0]
    wanted = (target.kind, classify(target, result.config.features))
    runs = 0

    def fails(items: list[Item]) -> bool:
        nonlocal runs
        runs += 1
        faults, actions = _split(items)
        again = run_seed(result.seed, result.store, plan=faults, actions=actions)
        features = result.config.features
        return any((v.kind, classify(v, features)) == wanted for v in again.violations)

    items: list[Item] = [*result.plan.items(), *result.actions]
    kept = ddmin(items, fails, budget=budget)
    faults, actions = _split(kept)
    final = run_seed(result.seed, result.store, plan=faults, actions=actions, keep_trace=True)
    return Reproduction(faults, actions, final, runs)
