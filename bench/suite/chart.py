"""Draw the PNG of ``python -m bench`` from its summary JSON (runs in bench/.venvs/report).

``python -m bench.suite.chart SUMMARY.json OUT.png``: W1 µs/step, W2 steps/s, W3 lines written
(the expected 100 marked), W4 µs/turn and W5 µs/step at 10,000 entries and resume time, one
bar per system, variant, backend and durability; a workload the summary lacks has no panel.
Only medians from the summary are drawn; failed figures are listed, not drawn.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib  # type: ignore[import-not-found, unused-ignore]

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]

COLOURS = {
    "aetheris": "#d62728",
    "dbos": "#1f77b4",
    "langgraph": "#2ca02c",
    "restate": "#9467bd",
    "temporal": "#8c564b",
    "absurd": "#ff7f0e",
}
PANELS = [  # workload, metric, title, log scale
    ("W1", "us_per_step", "W1: µs per durable step (lower is better)", True),
    ("W2", "steps_per_s", "W2: steps/s, jobs run to completion (higher is better)", True),
    ("W3", "lines", "W3: lines written by 100 steps with a SIGKILL (100 = each once)", False),
    ("W4", "us_per_turn", "W4: µs per agent turn, LLM call + tool call (lower is better)", True),
    ("W5", "us_per_step_at_10000", "W5: µs per step with 10,000 entries journaled", True),
    ("W5", "resume_10k_s", "W5: seconds to resume a 10,000-step journal (lower is better)", True),
]


def bars(medians: list[dict[str, Any]], workload: str, metric: str) -> list[dict[str, Any]]:
    found = [
        m
        for m in medians
        if m["workload"] == workload and m["metric"] == metric and m["status"] != "n/a"
    ]
    order = list(COLOURS)
    found.sort(
        key=lambda m: (
            order.index(m["system"]) if m["system"] in order else 99,
            m["backend"],
            m["durability"],
            m["variant"],
        )
    )
    return found


def draw(summary: dict[str, Any], out: Path) -> None:
    medians: list[dict[str, Any]] = summary["medians"]
    panels = [(p, bars(medians, p[0], p[1])) for p in PANELS]
    panels = [(p, found) for p, found in panels if found]
    if not panels:
        raise SystemExit("nothing to draw: no W1-W5 figures in the summary")
    heights = [max(2.0, 0.28 * len(found) + 1.2) for _, found in panels]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(11, sum(heights)), gridspec_kw={"height_ratios": heights}
    )
    axes = [axes] if len(panels) == 1 else list(axes)
    for ax, ((_, metric, title, log), found) in zip(axes, panels, strict=True):
        labels = [f"{m['system']} {m['variant']} · {m['backend']}/{m['durability']}" for m in found]
        values = [m["median"] if m["median"] is not None else 0.0 for m in found]
        colours = [COLOURS.get(m["system"], "#7f7f7f") for m in found]
        y = list(range(len(found)))
        ax.barh(y, values, color=colours)
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10, loc="left")
        if log and any(v > 0 for v in values):
            ax.set_xscale("log")
        if metric == "lines":
            ax.axvline(100, color="black", linewidth=0.8, linestyle="--")
        for i, m in enumerate(found):
            text = "FAILED" if m["median"] is None and m["status"] == "failed" else None
            if m["median"] is None and text is None:
                text = "n/a"
            if text is None:
                value = m["median"]
                text = f"{value:,.0f}" if value >= 10 else f"{value:.2f}"
            ax.text(
                values[i] if values[i] > 0 else ax.get_xlim()[0],
                i,
                f" {text}",
                va="center",
                fontsize=7,
            )
        ax.grid(axis="x", which="both", alpha=0.3)
    load = summary.get("machine", {}).get("load_avg_at_start", [0.0])[0]
    fig.suptitle(
        f"python -m bench, {summary.get('started', '')}: {summary.get('machine', {}).get('cores')}"
        f" cores, load average {load:.2f} at start, median of runs",
        fontsize=10,
    )
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.5 / sum(heights)))
    fig.savefig(out, dpi=110)


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m bench.suite.chart SUMMARY.json OUT.png")
    summary = json.loads(Path(sys.argv[1]).read_text())
    draw(summary, Path(sys.argv[2]))
    print(f"chart: {sys.argv[2]}")


if __name__ == "__main__":
    main()
