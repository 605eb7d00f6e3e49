"""Tables of medians with the ratio to Aetheris, and the summary JSON of ``python -m bench``.

Every figure comes from the results file (JSON lines written by the harnesses). A group is one
(system, workload, variant, backend, durability, metric); its figure is the median of its runs'
non-null values. Its **ratio** is against the matching Aetheris group (same workload, metric,
backend and durability; a peer's ``server`` backend is matched with Aetheris on ``sqlite``), and
reads as "Aetheris is ×N better": peer/Aetheris for times and bytes, Aetheris/peer for rates, so
above 1 favours Aetheris and below 1 favours the peer.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import harness
from bench.peers import common

REFERENCE = "aetheris"
WORKLOAD_TITLES = {
    "W1": "W1: step overhead (one job of sequential durable steps)",
    "W2": "W2: throughput (jobs x 10 steps started first, then run)",
    "W3": "W3: recovery after SIGKILL inside (or between) steps; lines written (100 = each once)",
    "W4": "W4: agent-shaped (scripted LLM + tool per turn)",
    "W5": "W5: journal growth (µs/step as the journal grows) and resume of the whole journal",
    "A1": "A1: a PydanticAI agent (scripted model, 3 tools) made durable by each system",
    "A2": "A2: a LangGraph tool loop (scripted chat model, 3 tools) on each checkpointer",
}
METRIC_ORDER = {
    "W1": ["us_per_step"],
    "W2": ["jobs_per_s", "steps_per_s", "startup_s"],
    "W3": ["recovery_s", "lines"],
    "W4": ["us_per_turn", "bytes_stored_20", "bytes_stored_100", "bytes_stored_200"],
    "W5": ["us_per_step_at_10", "us_per_step_at_1000", "us_per_step_at_10000", "resume_10k_s"],
    "A1": list(common.AGENT_METRICS),
    "A2": list(common.AGENT_METRICS),
}
HIGHER_IS_BETTER = {"jobs_per_s", "steps_per_s"}
NO_RATIO = {"lines", "dup_charge_calls", "dup_model_calls"}
BACKENDS = ["sqlite", "postgres", "server"]
DURABILITIES = ["full", "process"]
VARIANT_ORDER = {  # Aetheris's variants, in the order the tables show them
    "W1": ["steps", "at_most_once", "steps-process"],
    "W2": ["1-worker", "2-workers"],
    "W3": ["step", "between", "at_most_once", "at_most_once+reconcile"],
    "A1": ["AetherisDurability", "plain"],
    "A2": ["AetherisCheckpointer", "plain"],
}
AGENT_REFERENCE = {"A1": "AetherisDurability", "A2": "AetherisCheckpointer"}
SPECIAL = {"install", "harness"}  # rows the orchestrator writes itself


def reference_variant(workload: str, variant: str) -> str:
    """The Aetheris variant a peer's variant is compared with."""
    if workload == "W3":
        return "between" if ("between" in variant or "before" in variant) else "step"
    if workload in AGENT_REFERENCE:
        return variant if variant == "plain" else AGENT_REFERENCE[workload]
    return {"W1": "steps", "W2": "1-worker", "W4": "agent", "W5": "journal"}.get(workload, variant)


@dataclass
class Group:
    system: str
    workload: str
    variant: str
    backend: str
    durability: str
    metric: str
    values: list[float] = field(default_factory=list)
    runs: int = 0
    fsync: list[float] = field(default_factory=list)
    versions: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    ratio: float | None = None
    reference: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def failed(self) -> bool:
        return any(note.startswith(("FAILED", "not installed")) for note in self.notes)

    @property
    def status(self) -> str:
        if self.values:
            return "partial" if len(self.values) < self.runs else "ok"
        return "failed" if self.failed or self.metric in SPECIAL else "n/a"

    @property
    def problem(self) -> str:
        bad = [n for n in self.notes if n.startswith(("FAILED", "not installed"))]
        return bad[0] if bad else (self.notes[0] if self.notes else "")

    def as_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "workload": self.workload,
            "variant": self.variant,
            "backend": self.backend,
            "durability": self.durability,
            "metric": self.metric,
            "median": self.median,
            "values": self.values,
            "runs": self.runs,
            "ok_runs": len(self.values),
            "status": self.status,
            "fsync_p50_us": statistics.median(self.fsync) if self.fsync else None,
            "versions": sorted(self.versions),
            "ratio_aetheris_better": self.ratio,
            "ratio_against": self.reference,
            "note": self.problem[:2000],
        }


def load(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def group(rows: Sequence[dict[str, Any]]) -> list[Group]:
    groups: dict[tuple[str, ...], Group] = {}
    for r in rows:
        key = (r["system"], r["workload"], r["variant"], r["backend"], r["durability"], r["metric"])
        g = groups.setdefault(key, Group(*key))
        g.runs += 1
        if r.get("value") is not None:
            g.values.append(float(r["value"]))
        elif r.get("notes"):
            g.notes.append(str(r["notes"]))
        if r.get("fsync_p50_us") is not None:
            g.fsync.append(float(r["fsync_p50_us"]))
        if r.get("version"):
            g.versions.add(str(r["version"]))
        if r.get("value") is not None and r.get("notes") and not g.notes:
            g.notes.append(str(r["notes"]))
    found = list(groups.values())
    add_ratios(found)
    return found


def add_ratios(groups: Sequence[Group]) -> None:
    ours = {
        (g.workload, g.variant, g.backend, g.durability, g.metric): g
        for g in groups
        if g.system == REFERENCE
    }
    for g in groups:
        if g.system == REFERENCE or g.metric in NO_RATIO or g.median is None:
            continue
        backend = "sqlite" if g.backend == "server" else g.backend
        variant = reference_variant(g.workload, g.variant)
        ref = ours.get((g.workload, variant, backend, g.durability, g.metric))
        if ref is None or not ref.median or ref.median < 0 or g.median < 0:
            continue  # a negative figure (an overhead within the noise) has no ratio
        if g.metric in HIGHER_IS_BETTER:
            g.ratio = ref.median / g.median if g.median else None
        else:
            g.ratio = g.median / ref.median
        g.reference = f"aetheris {variant} {backend}/{g.durability}"


# -- tables -------------------------------------------------------------------------------------


def fmt(value: float) -> str:
    if abs(value) >= 1_000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def ratio_text(ratio: float) -> str:
    if ratio >= 10:
        return f"{ratio:.0f}"
    return f"{ratio:.1f}" if ratio >= 1 else f"{ratio:.2f}"


def where_text(where: list[tuple[str, str]], durabilities: set[str]) -> str:
    """``sqlite, server/full``: a backend with all its durabilities is named alone."""
    parts = []
    for backend in dict.fromkeys(b for b, _ in where):
        mine = {d for b, d in where if b == backend}
        parts += [backend] if mine >= durabilities else [f"{backend}/{d}" for d in sorted(mine)]
    return ", ".join(parts)


def cell(g: Group | None) -> str:
    if g is None:
        return ""
    if g.median is None:
        return "[red]FAILED[/]" if g.status == "failed" else "n/a"
    text = fmt(g.median)
    if g.ratio is not None:
        colour = "green" if g.ratio >= 1 else "yellow"
        text += f" [{colour}]×{ratio_text(g.ratio)}[/]"
    if g.status == "partial":
        text += "*"
    return text


def system_order(systems: Sequence[str]) -> dict[str, int]:
    return {s: i for i, s in enumerate([REFERENCE, *[s for s in systems if s != REFERENCE]])}


def row_key(
    workload: str, system: str, variant: str, backend: str, durability: str, order: dict[str, int]
) -> tuple[int, int, int, str]:
    """Where a row goes in a workload's table: system (Aetheris first), backend, durability,
    then Aetheris's variants in their order and the others by name."""
    known = VARIANT_ORDER.get(workload, [])
    return (
        order.get(system, 99),
        BACKENDS.index(backend) if backend in BACKENDS else 9,
        DURABILITIES.index(durability) if durability in DURABILITIES else 9,
        f"{known.index(variant):02d}" if variant in known else variant,
    )


def table(workload: str, groups: Sequence[Group], systems: Sequence[str]) -> Table | None:
    mine = [g for g in groups if g.workload == workload]
    if not mine:
        return None
    metrics = [m for m in METRIC_ORDER.get(workload, []) if any(g.metric == m for g in mine)]
    metrics += sorted({g.metric for g in mine} - set(metrics) - SPECIAL)
    rows: dict[tuple[str, str, str, str], dict[str, Group]] = {}
    for g in mine:
        rows.setdefault((g.system, g.variant, g.backend, g.durability), {})[g.metric] = g
    order = system_order(systems)

    def sort_key(key: tuple[str, str, str, str]) -> tuple[int, int, int, str]:
        return row_key(workload, *key, order)

    shown = Table(
        title=WORKLOAD_TITLES.get(workload, workload),
        caption=(
            "value = median over runs; ×N = how many times better Aetheris is than that row "
            "(peer/Aetheris for times, bytes and s; Aetheris/peer for rates), against the "
            "Aetheris row of the same workload, backend and durability (W2: 1-worker; W3: the "
            "same kill point; a server-backend peer: Aetheris on sqlite); * = some runs failed"
        ),
        title_justify="left",
    )
    for name in ("system", "variant", "backend", "dur."):
        shown.add_column(name, no_wrap=True)
    for metric in metrics:
        shown.add_column(metric, justify="right", no_wrap=True)
    shown.add_column("runs", justify="right")
    shown.add_column("fsync p50 µs", justify="right")
    shown.add_column("notes", overflow="fold", max_width=70)
    hidden: dict[tuple[str, str], list[tuple[str, str]]] = {}
    durabilities = {key[3] for key in rows}
    for key in sorted(rows, key=sort_key):
        system, variant, backend, durability = key
        cells = rows[key]
        values = list(cells.values())
        if all(g.status == "n/a" for g in values):
            problem = values[0].problem
            reason = problem if len(problem) <= 240 else problem[:239] + "…"
            where = hidden.setdefault((system, reason), [])
            if (backend, durability) not in where:
                where.append((backend, durability))
            continue
        special = [g for g in values if g.metric in SPECIAL]
        ok = max((len(g.values) for g in values), default=0)
        total = max((g.runs for g in values if g.metric not in SPECIAL), default=0)
        fsyncs = [f for g in values for f in g.fsync]
        notes = special[0].problem if special else ""
        if not notes:
            bad = [g for g in values if g.status in ("failed", "partial")]
            notes = bad[0].problem if bad else ""
        if backend == "server" and any(g.ratio for g in values):
            notes = ("vs Aetheris on sqlite; " + notes).strip("; ")
        shown.add_row(
            system,
            variant,
            backend,
            durability,
            *[cell(cells.get(m)) for m in metrics],
            f"{ok}/{total}" if total else "-",
            fmt(statistics.median(fsyncs)) if fsyncs else "",
            notes[:300],
        )
    for (system, reason), where in hidden.items():
        blank = [""] * len(metrics)
        text = where_text(where, durabilities)
        shown.add_row(system, "", text, "", *blank, "", "", f"n/a: {reason}")
    return shown


def print_tables(console: Console, groups: Sequence[Group], systems: Sequence[str]) -> None:
    for workload in sorted({g.workload for g in groups}):
        shown = table(workload, groups, systems)
        if shown is not None:
            console.print()
            console.print(shown)


# -- the summary ----------------------------------------------------------------------------------


def machine(load_at_start: tuple[float, float, float]) -> dict[str, Any]:
    return {
        **harness.machine(),
        "load_avg_at_start": list(load_at_start),
        "load_avg_at_end": list(os.getloadavg()),
    }


def postgres_settings() -> dict[str, str]:
    try:
        names = (*common.PG_SERVER_SETTINGS, "autovacuum")
        return common.postgres_settings(names, connect_timeout=5)
    except Exception as exc:  # the summary says why, the run goes on
        return {"error": f"{type(exc).__name__}: {exc}"}


def summary(
    groups: Sequence[Group],
    rows: Sequence[dict[str, Any]],
    context: dict[str, Any],
) -> dict[str, Any]:
    fsyncs = [float(r["fsync_p50_us"]) for r in rows if r.get("fsync_p50_us") is not None]
    info = context.pop("machine")
    info["fsync_p50_us_median"] = statistics.median(fsyncs) if fsyncs else None
    return {
        **context,
        "machine": info,
        "postgres": postgres_settings(),
        "ratio_definition": (
            "ratio_aetheris_better: peer/Aetheris for times, seconds and bytes; Aetheris/peer for "
            "rates (jobs_per_s, steps_per_s); > 1 favours Aetheris. Matched on workload, metric, "
            "backend, durability; W2 peers vs Aetheris 1-worker; W3 by kill point (between/"
            "before -> between, else step); server-backend peers vs Aetheris on sqlite."
        ),
        "medians": [g.as_json() for g in groups],
    }
