"""What one seed runs: its swarm configuration, workload, operator schedule and fault plan.

Everything is drawn from separate seeded streams (``random.Random(f"{seed}/{name}")``): removing
a fault from the plan leaves the workload and the operator's schedule unchanged, which is what
lets a failing plan shrink.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

FAULT_KINDS = ("kill", "kill_after", "lost_reply", "outage", "store_error", "pause")
HOT_SITES = (
    "commit:intent",
    "commit:outcome",
    "commit:park",
    "commit:end",
    "commit:consume",
    "create_job:child",
    "signals",
    "claim",
    "heartbeat",
    "events",
    "tool:before",
    "tool:after",
)
HOT_FACTOR = 6.0
FEATURES = (
    "kill",
    "lost_reply",
    "outage",
    "store_error",
    "zombie",
    "sigterm",
    "cancel",
    "pause_job",
    "deadline",
    "signals",
    "approvals",
    "resolve",
    "code_change",
)


def stream(seed: int, name: str) -> random.Random:
    """The seeded generator ``name`` of ``seed`` (stable across processes and hash seeds)."""
    return random.Random(f"{seed}/{name}")


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault injected at one (site, occurrence) of a run."""

    kind: str
    duration: float = 0.0  # outage or pause length, virtual seconds
    restart: float = 1.0  # after a kill: when the supervisor starts a replacement

    def describe(self) -> str:
        """A short human-readable form."""
        extra = f" {self.duration:.2f}s" if self.duration else ""
        return f"{self.kind}{extra}"


@dataclass(frozen=True, slots=True)
class Action:
    """An operator's (or the supervisor's) action at a virtual time, fully drawn in advance."""

    at: float
    kind: str
    target: int = 0
    arg: Any = None

    def describe(self) -> str:
        """A short human-readable form."""
        return f"t={self.at:.2f} {self.kind} #{self.target}" + (
            f" {self.arg!r}" if self.arg is not None else ""
        )


@dataclass(frozen=True)
class SimConfig:
    """One seed's swarm configuration: sizes, timings, and which faults it enables, how often."""

    seed: int
    store: str
    processes: int
    concurrency: int
    lease_ttl: float
    poll_interval: float
    max_recoveries: int
    chaos_seconds: float
    quiet_budget: float
    features: frozenset[str]
    rates: dict[str, float] = field(default_factory=dict)
    hot_sites: frozenset[str] = frozenset()

    def enabled(self, feature: str) -> bool:
        """Whether this seed enables ``feature``."""
        return feature in self.features

    def rate(self, kind: str, site: str) -> float:
        """How often ``kind`` strikes at ``site`` (sites the seed picked as hot: more often)."""
        return self.rates[kind] * (HOT_FACTOR if site in self.hot_sites else 1.0)

    def summary(self) -> dict[str, Any]:
        """The configuration as plain JSON-able data."""
        data = asdict(self)
        data["features"] = sorted(self.features)
        data["hot_sites"] = sorted(self.hot_sites)
        return data


def draw_config(seed: int, store: str) -> SimConfig:
    """Swarm: each seed draws its own sizes, enabled features and fault rates."""
    rng = stream(seed, "config")
    calm = rng.random() < 0.1  # some seeds run with no faults and no operator chaos at all
    features = frozenset() if calm else frozenset(f for f in FEATURES if rng.random() < 0.55)
    rates = {
        "kill": rng.choice((0.004, 0.01, 0.025)),
        "kill_after": rng.choice((0.004, 0.01, 0.025)),
        "lost_reply": rng.choice((0.005, 0.02, 0.05)),
        "outage": rng.choice((0.002, 0.006, 0.015)),
        "store_error": rng.choice((0.003, 0.01, 0.03)),
        "pause": rng.choice((0.003, 0.01, 0.02)),
    }
    return SimConfig(
        seed=seed,
        store=store,
        processes=rng.choice((1, 2, 2, 3)),
        concurrency=rng.choice((1, 2, 4)),
        lease_ttl=rng.choice((2.0, 3.0, 5.0)),
        poll_interval=rng.choice((0.5, 1.0, 2.0)),
        max_recoveries=rng.choice((1, 2, 5)),
        chaos_seconds=rng.choice((20.0, 40.0, 60.0)),
        quiet_budget=180.0,
        features=features,
        rates=rates,
        hot_sites=frozenset(rng.sample(HOT_SITES, 2)),
    )
