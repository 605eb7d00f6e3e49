"""The simulation's throughput, shown at the end of a test session that ran the sweep."""

from __future__ import annotations

from collections import defaultdict

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Seeds per second per store, from what each sweep shard recorded."""
    seeds: dict[str, float] = defaultdict(float)
    seconds: dict[str, float] = defaultdict(float)
    for reports in terminalreporter.stats.values():
        for report in reports:
            props = dict(getattr(report, "user_properties", ()))
            if getattr(report, "when", None) == "call" and "sim_store" in props:
                seeds[props["sim_store"]] += props["sim_seeds"]
                seconds[props["sim_store"]] += props["sim_seconds"]
    for store in sorted(seeds):
        rate = seeds[store] / max(seconds[store], 1e-9)
        terminalreporter.write_line(
            f"simulation {store}: {seeds[store]:.0f} seeds in {seconds[store]:.1f}s of one "
            f"worker's time, {rate:.1f} seeds/s per worker"
        )
