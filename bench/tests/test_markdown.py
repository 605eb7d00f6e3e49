"""The Markdown that docs/benchmarks.md pastes: tables of medians and the issue's targets."""

from __future__ import annotations

from typing import Any

from bench.suite.markdown import render


def median(
    system: str,
    workload: str,
    variant: str,
    backend: str,
    durability: str,
    metric: str,
    value: float | None,
    ratio: float | None = None,
) -> dict[str, Any]:
    return {
        "system": system,
        "workload": workload,
        "variant": variant,
        "backend": backend,
        "durability": durability,
        "metric": metric,
        "median": value,
        "values": [] if value is None else [value],
        "runs": 1,
        "ok_runs": 0 if value is None else 1,
        "status": "ok" if value is not None else "n/a",
        "fsync_p50_us": 200.0,
        "ratio_aetheris_better": ratio,
    }


def summary(medians: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "command": ["python", "-m", "bench"],
        "started": "2026-11-26T10:00:00+00:00",
        "elapsed_s": 600.0,
        "medians": medians,
        "machine": {"fsync_p50_us_median": 200.0, "load_avg_at_start": [0.1, 0.1, 0.1]},
    }


def target_rows(text: str) -> dict[str, str]:
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and cells[2] in ("yes", "no"):
            rows[cells[0]] = cells[2]
    return rows


def test_tables_show_medians_ratios_and_fold_backends_a_system_lacks() -> None:
    text = render(
        [
            summary(
                [
                    median("aetheris", "W1", "steps", "sqlite", "full", "us_per_step", 240.0),
                    median("dbos", "W1", "steps", "sqlite", "full", "us_per_step", 2400.0, 10.0),
                    median("restate", "W1", "steps", "sqlite", "full", "us_per_step", None),
                ]
            )
        ],
        ["x.json"],
    )
    assert "| **aetheris** | steps | sqlite | full | 240.0 | 1/1 |" in text
    assert "| dbos | steps | sqlite | full | 2,400 (×10) | 1/1 |" in text
    assert "Not applicable: restate on sqlite." in text


def test_targets_are_checked_against_the_medians() -> None:
    text = render(
        [
            summary(
                [
                    median("aetheris", "W1", "steps", "sqlite", "full", "us_per_step", 260.0),
                    median("aetheris", "W1", "steps", "sqlite", "process", "us_per_step", 25.0),
                    median("aetheris", "W2", "1-worker", "sqlite", "full", "steps_per_s", 9000.0),
                    median("langgraph", "W2", "steps", "sqlite", "full", "steps_per_s", 400.0),
                    median("restate", "W2", "steps", "server", "full", "steps_per_s", 1000.0),
                    median("aetheris", "W3", "at_most_once", "sqlite", "full", "lines", 51.0),
                    median("aetheris", "W3", "between", "sqlite", "full", "lines", 101.0),
                    median("aetheris", "W4", "agent", "sqlite", "full", "bytes_stored_20", 1e3),
                    median("aetheris", "W4", "agent", "sqlite", "full", "bytes_stored_100", 5e3),
                    median("aetheris", "W4", "agent", "sqlite", "full", "bytes_stored_200", 2e4),
                    median(
                        "aetheris", "W5", "journal", "sqlite", "full", "us_per_step_at_10", 300.0
                    ),
                    median(
                        "aetheris", "W5", "journal", "sqlite", "full", "us_per_step_at_1000", 310.0
                    ),
                    median(
                        "aetheris", "W5", "journal", "sqlite", "full", "us_per_step_at_10000", 320.0
                    ),
                    median("aetheris", "W5", "journal", "sqlite", "full", "resume_10k_s", 0.3),
                ]
            )
        ],
        ["x.json"],
    )
    rows = target_rows(text)
    assert "260.0 µs = 1.30 × fsync p50 200.0 µs" in text
    assert rows["W1 full durability: ≤ 1.25 × one fsync per pure step (SQLite)"] == "no"
    assert rows["W1 process-crash durability: ≤ 30 µs per pure step (SQLite NORMAL)"] == "yes"
    assert rows["W2: ≥ 5,000 steps/s, SQLite, one worker process, full durability"] == "yes"
    # the best peer is Restate on its server (compared with SQLite): 9,000 / 1,000 = 9 < 10
    assert rows["W2 sqlite/full: ≥ 10 × the best peer's steps/s"] == "no"
    assert "restate steps server/full" in text
    # a between-step kill that wrote a line twice is a duplicate
    assert rows["W3: zero duplicated side effects (at_most_once and between-step kills)"] == "no"
    # 2e4 / 5e3 = 4: quadratic
    assert rows["W4 sqlite/full: stored bytes linear in turns"] == "no"
    assert rows["W5 sqlite/full: flat per-step cost from 10 to 10,000 entries"] == "yes"
    assert rows["W5 sqlite/full: resume of a 10,000-entry journal < 1 s"] == "yes"
