"""``aetheris top``'s rates: jobs made and ended per minute, from looks over the last minute."""

from __future__ import annotations

from aetheris.cli.top import WINDOW, Look, Rates, snapshot
from aetheris.store.port import JobStatus, Summary


def look(at: float, pending: int, succeeded: int, failed: int = 0) -> Look:
    jobs = {JobStatus.PENDING: pending, JobStatus.SUCCEEDED: succeeded, JobStatus.FAILED: failed}
    return Look(at, Summary({s: n for s, n in jobs.items() if n}, None, 0))


def test_rates_need_two_looks_and_count_per_minute() -> None:
    rates = Rates()
    rates.add(look(100.0, pending=10, succeeded=0))
    assert rates.per_minute(lambda x: x.ended) is None
    rates.add(look(110.0, pending=6, succeeded=5, failed=1))  # 2 made, 6 ended in 10 s
    assert rates.per_minute(lambda x: x.ended) == 36.0
    assert rates.per_minute(lambda x: x.made) == 12.0


def test_rates_forget_looks_older_than_the_window() -> None:
    rates = Rates()
    rates.add(look(0.0, pending=0, succeeded=0))
    rates.add(look(10.0, pending=0, succeeded=100))  # a burst, long ago
    for t in range(20, 20 + int(WINDOW) + 30, 10):
        rates.add(look(float(t), pending=0, succeeded=100))
    assert rates.looks[-1].at - rates.looks[0].at <= WINDOW
    assert rates.per_minute(lambda x: x.ended) == 0.0


def test_a_snapshot_names_every_status() -> None:
    doc = snapshot(look(5.0, pending=2, succeeded=1))
    assert doc["jobs"] == {
        s.value: {"pending": 2, "succeeded": 1}.get(s.value, 0) for s in JobStatus
    }
    assert doc["made_per_minute"] is None
