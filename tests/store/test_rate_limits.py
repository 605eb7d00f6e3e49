"""Token buckets (``take_token``), on every store: the first ``burst`` calls go at once, the
next ones wait their turn, and the bucket refills at its rate."""

from __future__ import annotations

import asyncio

import pytest

from aetheris.store.port import Store


async def test_a_burst_goes_at_once_and_later_takers_queue(store: Store) -> None:
    waits = [await store.take_token("tool:send", 10.0, 2.0) for _ in range(5)]
    assert waits[:2] == [0.0, 0.0]
    # Reservations: each taker waits one interval (0.1 s) longer than the one before it.
    assert waits[2] == pytest.approx(0.1, abs=0.03)
    assert waits[3] == pytest.approx(0.2, abs=0.03)
    assert waits[4] == pytest.approx(0.3, abs=0.03)


async def test_buckets_are_per_name_and_refill(store: Store) -> None:
    assert await store.take_token("a", 20.0, 1.0) == 0.0
    assert await store.take_token("b", 20.0, 1.0) == 0.0
    assert await store.take_token("a", 20.0, 1.0) > 0.0
    await asyncio.sleep(0.2)  # 0.1 s pays the reservation back; the rest refills
    assert await store.take_token("a", 20.0, 1.0) == 0.0
