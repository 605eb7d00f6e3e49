"""The simulation in CI: a fixed budget of seeds on both stores, determinism, coverage.

``SEEDS_PER_STORE`` seeds run on each store, split into shards that ``pytest -n 2`` spreads
over its workers. A shard fails if any seed violates an invariant (each failure is listed with
its defects and the command that replays it) or if an essential coverage probe never fired.
``python -m tests.sim --duration SECONDS`` runs the long mode, as long as asked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.sim import report
from tests.sim.shrink import ddmin
from tests.sim.sim import run_seed

SEEDS_PER_STORE = 1000
SHARDS = 8
STORES = ("memory", "sqlite")
ROOT = Path(__file__).resolve().parents[2]


def _shard(index: int) -> range:
    size = SEEDS_PER_STORE // SHARDS
    return range(index * size, (index + 1) * size)


@pytest.mark.parametrize("shard", range(SHARDS))
@pytest.mark.parametrize("store", STORES)
def test_simulated_runs_keep_every_invariant(
    store: str, shard: int, record_property: pytest.RecordProperty
) -> None:
    sweep = report.Sweep()
    for seed in _shard(shard):
        began = time.perf_counter()
        result = run_seed(seed, store)
        sweep.add(result, time.perf_counter() - began)
    record_property("sim_store", store)
    record_property("sim_seeds", sweep.seeds[store])
    record_property("sim_seconds", round(sweep.seconds[store], 3))
    problems = [report.one_line(f) for f in sweep.failures[:40]]
    if len(sweep.failures) > 40:
        problems.append(f"... and {len(sweep.failures) - 40} more failing seeds")
    missing = sweep.missing_probes()
    if missing:
        problems.append("coverage: never happened in this shard: " + "; ".join(missing))
    assert not problems, "\n".join([*problems, sweep.summary()])


@pytest.mark.parametrize("store", STORES)
def test_a_seed_replays_to_the_same_trace(store: str) -> None:
    for seed in (3, 17, 101, 555, 1234):
        first = run_seed(seed, store)
        again = run_seed(seed, store)
        assert again.digest == first.digest, f"{store} seed {seed} is not deterministic"
        planned = run_seed(seed, store, plan=first.plan, actions=first.actions)
        assert planned.digest == first.digest, f"{store} seed {seed}: its plan replays otherwise"


def test_a_seed_replays_the_same_in_another_process_with_another_hash_seed() -> None:
    code = "from tests.sim.sim import run_seed; print(run_seed(17, 'memory').digest)"
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == run_seed(17, "memory").digest


def test_ddmin_finds_the_one_fault_that_matters() -> None:
    items = list(range(40))
    runs = []

    def fails(subset: list[int]) -> bool:
        runs.append(len(subset))
        return 13 in subset and 27 in subset

    assert ddmin(items, fails) == [13, 27]
    assert len(runs) < 60
