"""How runs are told to people: one seed in full, a sweep in summary, plans as files."""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.sim.classify import KNOWN, classify, defects
from tests.sim.config import Action, Fault
from tests.sim.faulty import FaultKey
from tests.sim.sim import SimResult

ESSENTIAL_PROBES = {
    "kill": "a kill happened",
    "in_doubt": "an effect went in doubt",
    "stale_lease_fenced": "a stale lease was fenced",
    "lost_reply_recovered": "a lost reply was recovered",
    "parked:nondeterminism": "a nondeterminism park happened",
}


def command(seed: int, store: str, plan: Path | None = None) -> str:
    """The exact command that re-runs a seed (with a plan file: exactly that plan)."""
    extra = f" --plan {plan}" if plan else ""
    return f"PYTHONHASHSEED=0 python -m tests.sim --seed {seed} --store {store}{extra}"


def plan_to_json(
    seed: int, store: str, faults: dict[FaultKey, Fault], actions: list[Action]
) -> str:
    """A fault plan and operator schedule as JSON (``--plan`` reads it back)."""
    doc = {
        "seed": seed,
        "store": store,
        "faults": [[k[0], k[1], f.kind, f.duration, f.restart] for k, f in sorted(faults.items())],
        "actions": [[a.at, a.kind, a.target, a.arg] for a in actions],
    }
    return json.dumps(doc, indent=1)


def plan_from_json(text: str) -> tuple[dict[FaultKey, Fault], list[Action]]:
    """The inverse of :func:`plan_to_json`."""
    doc = json.loads(text)
    faults = {(f[0], int(f[1])): Fault(f[2], float(f[3]), float(f[4])) for f in doc["faults"]}
    actions = [Action(float(a[0]), a[1], int(a[2]), a[3]) for a in doc["actions"]]
    return faults, actions


def describe_plan(faults: dict[FaultKey, Fault], actions: list[Action]) -> list[str]:
    """A fault plan and operator schedule, one item a line."""
    lines = [f"  fault {site}#{n}: {f.describe()}" for (site, n), f in sorted(faults.items())]
    lines += [f"  action {a.describe()}" for a in actions]
    return lines or ["  (no faults, no operator actions)"]


def trace_summary(result: SimResult) -> list[str]:
    """Counts of what the trace recorded, the probes that fired, how every job ended."""
    events = Counter(json.loads(line)["ev"] for line in result.trace)
    statuses = Counter(result.statuses.values())
    return [
        f"  virtual time {result.virtual_time:.1f}s, {result.steps} loop steps, "
        f"trace {sum(events.values())} lines, sha256 {result.digest[:16]}",
        "  events: " + ", ".join(f"{k} {v}" for k, v in sorted(events.items())),
        "  probes: " + ", ".join(f"{k} {v}" for k, v in sorted(result.probes.items())),
        "  jobs: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())),
    ]


def violations(result: SimResult) -> list[str]:
    """Each violation with the defect it is classified as."""
    lines = []
    for v in result.violations:
        label = classify(v, result.config.features, result.violations)
        name = {"-": "consequence", "NEW": "NEW"}.get(label, f"defect {label}")
        lines.append(f"  [{name}] {v.describe()}")
    return lines


def full(result: SimResult) -> str:
    """Everything about one run: configuration, trace summary, violations, plan, command."""
    config = result.config.summary()
    head = f"seed {result.seed} on {result.store}: " + ("ok" if result.ok else "FAILED")
    lines = [head, f"  config: {json.dumps(config, sort_keys=True)}", *trace_summary(result)]
    if result.ok:
        return "\n".join(lines)
    found = defects(result.violations, result.config.features)
    lines += [f"  defects: {', '.join(found)}", "violations:", *violations(result)]
    lines += ["fault plan and operator actions:", *describe_plan(result.plan, result.actions)]
    lines += ["re-run:", f"  {command(result.seed, result.store)}"]
    return "\n".join(lines)


def one_line(result: SimResult) -> str:
    """A failing seed in one line, with its re-run command."""
    found = defects(result.violations, result.config.features)
    return (
        f"FAIL {result.store:<6} seed {result.seed:<6} defects {','.join(found) or '-':<14} "
        f"{','.join(result.kinds)}  ->  {command(result.seed, result.store)}"
    )


@dataclass
class Sweep:
    """What a sweep found, per store and per defect."""

    seeds: Counter[str] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)
    failures: list[SimResult] = field(default_factory=list)
    probes: Counter[str] = field(default_factory=Counter)
    by_defect: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    def add(self, result: SimResult, seconds: float) -> None:
        """Count one run."""
        self.seeds[result.store] += 1
        self.seconds[result.store] += seconds
        self.probes.update(dict.fromkeys(result.probes, 1))
        if result.ok:
            return
        self.failures.append(result)
        for label in defects(result.violations, result.config.features):
            self.by_defect.setdefault(label, []).append((result.store, result.seed))

    def missing_probes(self) -> list[str]:
        """Essential probes that never fired in this sweep."""
        return [text for probe, text in ESSENTIAL_PROBES.items() if not self.probes[probe]]

    def summary(self) -> str:
        """Seeds per second per store, and failures grouped by defect."""
        lines = []
        for store in sorted(self.seeds):
            rate = self.seeds[store] / max(self.seconds[store], 1e-9)
            failed = sum(1 for f in self.failures if f.store == store)
            lines.append(
                f"{store}: {self.seeds[store]} seeds in {self.seconds[store]:.1f}s "
                f"({rate:.1f} seeds/s), {failed} failed"
            )
        for label in sorted(self.by_defect, key=defect_order):
            where = self.by_defect[label]
            store, seed = where[0]
            text = KNOWN.get(label, "not a known defect: diagnose")
            lines.append(f"  defect {label:>4}: {len(where):>4} seeds ({text})")
            lines.append(f"        e.g. {command(seed, store)}")
        missing = self.missing_probes()
        if missing:
            lines.append("coverage: never happened: " + "; ".join(missing))
        return "\n".join(lines)


def defect_order(label: str) -> tuple[bool, int, str]:
    """Known defects by number first, then the ones found here."""
    return (label[0] == "N", len(label), label)


def emit(text: str) -> None:
    """Write a line to stdout, flushed."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def dump(value: Any) -> str:
    """Sorted JSON of ``value``."""
    return json.dumps(value, sort_keys=True, default=str)
