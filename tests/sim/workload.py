"""The workload generator: job plans for the ``interp`` agent, and the operator's schedule."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from tests.sim.config import Action, SimConfig, stream

_WEIGHTS: dict[str, float] = {
    "lookup": 3,
    "notify": 2,
    "book": 1,
    "flaky": 1,
    "charge": 3,
    "ship": 3,
    "wire": 1,
    "explode": 0.5,
    "step": 2,
    "now": 1,
    "uuid": 1,
    "random": 0.5,
    "signal": 2,
    "approval": 1.2,
    "sleep": 1,
    "child": 1.5,
    "gather": 1.5,
    "swallow": 1.2,
}
_GATHERS = (
    (("charge",), ("signal", "go", None)),  # an at_most_once tool beside a wait
    (("ship",), ("lookup",)),
    (("notify",), ("sleep", 1.0)),
    (("lookup",), ("step",)),
    (("signal", "go", None), ("signal", "data", 10.0)),
)
_SWALLOWED = ("charge", "ship", "notify", "explode", "signal", "child", "lookup")
SIGNALS = ("go", "data")
_TEMPLATES: tuple[tuple[tuple[Any, ...], ...], ...] = (
    (("ship",), ("book",), ("explode",)),  # a saga that fails after its effects
    (("ship",), ("signal", "go", None), ("charge",), ("explode",)),
    (("approval", None), ("wire",), ("signal", "go", 15.0)),  # people in the loop
    (("child", (("charge",), ("signal", "go", None))), ("child", (("ship",),)), ("lookup",)),
    (("gather", (("charge",), ("signal", "go", None))), ("notify",)),  # a tool beside a wait
    (("swallow", ("charge",)), ("swallow", ("signal", "data", None)), ("swallow", ("ship",))),
    (("swallow", ("child", (("lookup",),))), ("swallow", ("notify",)), ("charge",)),
    (("lookup",), ("charge",), ("sleep", 2.0), ("charge",)),  # a deploy lands in between
    (("uuid",), ("child", (("notify",), ("charge",))), ("approval", 20.0)),
)


@dataclass(frozen=True)
class JobSpec:
    """A top-level job the operator starts."""

    id: str
    plan: list[list[Any]]
    start_at: float
    deadline: float | None


@dataclass(frozen=True)
class Workload:
    """Jobs and the operator's chaos-phase actions of one seed."""

    jobs: list[JobSpec]
    actions: list[Action]


class _PlanDrawer:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.count = 0

    def label(self, kind: str) -> str:
        """A fresh label for an operation."""
        self.count += 1
        return f"{kind}{self.count}"

    def plan(self, length: int, depth: int) -> list[list[Any]]:
        """A random plan of ``length`` operations."""
        kinds = [k for k in _WEIGHTS if depth == 0 or k not in ("child", "gather")]
        weights = [_WEIGHTS[k] for k in kinds]
        return [self.op(self.rng.choices(kinds, weights)[0], depth) for _ in range(length)]

    def template(self) -> list[list[Any]]:
        """One of the templates, made concrete."""
        return [self.shape(step, 0) for step in self.rng.choice(_TEMPLATES)]

    def shape(self, step: tuple[Any, ...], depth: int) -> list[Any]:
        """A template step made concrete: fresh labels, nested plans."""
        kind = step[0]
        if kind == "child":
            return ["child", [self.shape(s, depth + 1) for s in step[1]]]
        if kind == "gather":
            return ["gather", [self.shape(s, depth) for s in step[1]]]
        if kind == "swallow":
            return ["swallow", self.shape(step[1], depth + 1)]
        if kind == "approval":
            return ["approval", self.label("ok"), step[1]]
        if kind in ("signal", "sleep", "uuid", "now", "random"):
            return list(step)
        return [kind, self.label(kind)]

    def op(self, kind: str, depth: int) -> list[Any]:
        """One random operation of ``kind``."""
        rng = self.rng
        if kind == "signal":
            return ["signal", rng.choice(SIGNALS), rng.choice((None, None, 3.0, 15.0))]
        if kind == "approval":
            return ["approval", self.label("ok"), rng.choice((None, 5.0, 20.0))]
        if kind == "sleep":
            return ["sleep", rng.choice((0.5, 2.0, 8.0))]
        if kind in ("now", "uuid", "random"):
            return [kind]
        if kind == "child":
            return ["child", self.plan(rng.randint(1, 3), depth + 1)]
        if kind == "gather":
            pair = rng.choice(_GATHERS)
            return ["gather", [self.op(p[0], depth) if len(p) == 1 else list(p) for p in pair]]
        if kind == "swallow":
            return ["swallow", self.op(rng.choice(_SWALLOWED), depth + 1)]
        return [kind, self.label(kind)]


def draw_workload(config: SimConfig) -> Workload:
    """Jobs (plans, start times, deadlines) and the operator's chaos schedule for one seed."""
    rng = stream(config.seed, "workload")
    drawer = _PlanDrawer(rng)
    jobs = []
    for i in range(rng.randint(2, 5)):
        plan = drawer.template() if rng.random() < 0.5 else drawer.plan(rng.randint(2, 6), 0)
        if config.enabled("code_change") and not any(op[0] == "charge" for op in plan):
            plan.insert(rng.randrange(len(plan) + 1), ["charge", drawer.label("charge")])
        start = 0.0 if i < 2 else round(rng.uniform(0.0, config.chaos_seconds / 2), 3)
        deadline = None
        if config.enabled("deadline") and rng.random() < 0.35:
            deadline = rng.choice((3.0, 10.0, 30.0))
        jobs.append(JobSpec(f"job-{i}", plan, start, deadline))
    return Workload(jobs, _draw_actions(rng, config))


def _action_kinds(config: SimConfig) -> list[str]:
    kinds: list[str] = []
    if config.enabled("cancel"):
        kinds += ["cancel", "cancel_pending", "cancel_child", "cancel_stuck"]
    if config.enabled("pause_job"):
        kinds += ["pause", "resume", "resume"]
    if config.enabled("signals"):
        kinds += ["signal", "signal", "signal_dup", "signal_wrong"]
    if config.enabled("approvals"):
        kinds += ["approve", "approve_early", "approve_raw", "reject"]
    if config.enabled("resolve"):
        kinds += ["resolve", "resolve"]
    if config.enabled("sigterm"):
        kinds += ["sigterm"]
    return kinds


def _draw_actions(rng: random.Random, config: SimConfig) -> list[Action]:
    kinds = _action_kinds(config)
    if not kinds:
        return []
    actions = []
    for _ in range(rng.randint(1, 16)):
        kind = rng.choice(kinds)
        at = round(rng.uniform(0.2, config.chaos_seconds), 3)
        arg: Any = None
        if kind in ("signal", "signal_dup"):
            arg = rng.choice(SIGNALS)
        elif kind == "signal_wrong":
            arg = "nobody-waits-for-this"
        elif kind in ("approve_early", "approve_raw"):
            arg = rng.randrange(0, 1000)
        elif kind == "resolve":
            arg = rng.choice(("not_executed", "not_executed", "fail"))
        actions.append(Action(at, kind, rng.randrange(1000), arg))
    return sorted(actions, key=lambda a: (a.at, a.kind, a.target))


def _width(op: list[Any], version: int) -> int:
    """How many journal positions an operation takes."""
    kind = op[0]
    if kind == "gather":
        return sum(_width(sub, version) for sub in op[1])
    if kind == "swallow":
        return _width(op[1], version)
    if kind in ("child", "wire") or (kind == "charge" and version >= 2):
        return 2
    return 1


def approval_positions(plan: list[list[Any]], version: int = 1) -> list[int]:
    """Where a plan's approval requests land (what an operator could guess), in order."""
    found, position = [], 0
    for op in plan:
        inner = op[1] if op[0] == "swallow" else op
        if inner[0] in ("approval", "wire"):
            found.append(position)
        position += _width(op, version)
    return found
