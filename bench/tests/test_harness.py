"""The pure parts of the one Aetheris harness: W5's figures, the core's tables, database URLs."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from bench import core, harness, workloads


def test_growth_record_reads_the_windows_the_buckets_and_the_resume() -> None:
    live = [i / 1e6 for i in range(1, 10_001)]  # step i took i µs
    replay = {"entered": 10.5, "passed": 10.75, "times": [2e-6, 4e-6]}
    record = workloads.growth_record(live, replay, claim_at=10.0)
    windows = {"1-10": 5.5, "991-1010": 1000.5, "9991-10000": 9995.5}
    assert record["windows_us"] == pytest.approx(windows)
    assert record["last_over_first"] == pytest.approx(9995.5 / 5.5)
    assert len(record["bucket_median_us"]) == 10
    assert record["first_bucket_us"] == pytest.approx(500.5)
    assert record["replay_median_us"] == pytest.approx(3.0)
    resume = (record["resume_s"], record["resume_load_s"], record["resume_replay_s"])
    assert resume == pytest.approx((0.75, 0.5, 0.25))


def test_a_short_run_has_no_figure_for_the_sizes_it_did_not_reach() -> None:
    record = workloads.growth_record([1e-6] * 1_010, {"entered": 0, "passed": 1, "times": [1]}, 0)
    assert record["windows_us"]["9991-10000"] is None
    assert record["last_over_first"] is None
    assert record["windows_us"]["991-1010"] == pytest.approx(1.0)


def test_percentile() -> None:
    assert harness.percentile([5, 1, 4, 2, 3], 50) == 3
    assert harness.percentile(range(1, 201), 90) == 180


def test_sqlite_databases_carry_their_synchronous_setting(tmp_path: Path) -> None:
    with harness.fresh_database("sqlite", None, tmp_path, "a") as full:
        assert full.url == f"sqlite:///{tmp_path.resolve()}/a.sqlite"
    with harness.fresh_database("sqlite", "normal", tmp_path, "b") as normal:
        assert normal.url.endswith("/b.sqlite?synchronous=normal")
        assert normal.settings == {"synchronous": "normal"}


def test_core_tables_show_the_medians_of_each_workload() -> None:
    case = core.w3_cases(["sqlite"])[0]
    runs = [
        {"recovery_s": s, "lease_left_at_kill_s": 28.5, "steps_before_kill": 10}
        | {"fsync": {"p50_us": 100.0, "p90_us": 150.0}}
        for s in (0.4, 0.5, 0.6)
    ]
    console = Console(width=200, record=True)
    for table in core.tables([core.Outcome(case, runs)]):
        console.print(table)
    text = console.export_text()
    assert "W3-lite recovery after kill -9" in text
    assert "flock released" in text
    assert "0.50" in text
    assert "0.40 / 0.50 / 0.60" in text
    assert core.summary([core.Outcome(case, runs)])[0]["median"] == {"recovery_s": 0.5}
