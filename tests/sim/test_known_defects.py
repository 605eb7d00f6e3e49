"""One seed per defect the simulator found, replayed forever.

Each seed reproduced its defect on the runtime as the simulator first met it (the
``python -m tests.sim --seed N`` command shrinks it to a minimal plan). A fix makes its test
pass; a later change may also steer the seed away from the scenario, which is why the sweep in
``test_simulation`` stays the real guard.
"""

from __future__ import annotations

import pytest

from tests.sim.classify import KNOWN, classify
from tests.sim.report import command
from tests.sim.sim import run_seed

FOUND = [
    ("1", 1),
    ("2", 133),
    ("3", 35),
    ("4", 16),
    ("6", 15),
    ("7", 21),
    ("8", 15),
    ("9", 1473),
    ("10", 60),
    ("11", 0),
    ("14", 63),
    ("N1", 2),
    ("N2", 367),
    ("N3", 169),
    ("N4", 1089),
    ("N5", 375),
    ("N6", 1169),
    ("14", 2876),  # the stop came while the intent of a side effect was being written
    ("N7", 3024),  # two parallel waits for one signal name took the same signal
]


@pytest.mark.parametrize(("defect", "seed"), FOUND, ids=[f"defect-{d}" for d, _ in FOUND])
def test_the_seed_that_found_a_defect_no_longer_shows_it(defect: str, seed: int) -> None:
    result = run_seed(seed, "memory")
    features = result.config.features
    found = [
        v.describe()
        for v in result.violations
        if classify(v, features, result.violations) == defect
    ]
    assert not found, "\n".join(
        [f"defect {defect} ({KNOWN[defect]}) reproduces:", *found, command(seed, "memory")]
    )
