"""``SimLoop`` pinned: virtual time, deadlocks, no threads, the asyncio primitives we use."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from tests.sim.loop import Deadlock, SimLoop, StepBudgetExceeded, current_process, run_simulated


def test_time_jumps_to_the_exact_due_time_of_the_next_timer() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        seen = []
        for delay in (0.1, 2.5, 86_400.0 * 3):
            await asyncio.sleep(delay)
            seen.append(loop.time())
        return seen

    seen, loop = run_simulated(main)
    assert seen == [0.1, 2.6, 2.6 + 86_400.0 * 3]
    assert loop.steps < 20


def test_asyncio_timeout_and_wait_for_fire_in_virtual_time() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(3):
                await asyncio.sleep(10)
        first = loop.time()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.Event().wait(), timeout=1.5)
        return first, loop.time()

    assert run_simulated(main)[0] == (3.0, 4.5)


def test_queue_producer_and_consumer_interleave_in_order() -> None:
    async def main() -> list[tuple[float, int]]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        got = []

        async def produce() -> None:
            for i in range(3):
                await asyncio.sleep(1)
                await queue.put(i)

        producer = asyncio.create_task(produce())
        for _ in range(3):
            item = await queue.get()
            got.append((loop.time(), item))
        await producer
        return got

    assert run_simulated(main)[0] == [(1.0, 0), (2.0, 1), (3.0, 2)]


def test_taskgroup_cancels_siblings_in_creation_order() -> None:
    async def main() -> list[int]:
        order: list[int] = []

        async def sibling(i: int) -> None:
            try:
                await asyncio.sleep(100)
            except asyncio.CancelledError:
                order.append(i)
                raise

        async def boom() -> None:
            await asyncio.sleep(1)
            raise ValueError("boom")

        async def run_group() -> None:
            async with asyncio.TaskGroup() as group:
                for i in range(6):
                    group.create_task(sibling(i))
                group.create_task(boom())

        with pytest.raises(ExceptionGroup):
            await run_group()
        return order

    first = run_simulated(main)[0]
    assert sorted(first) == list(range(6))
    assert all(run_simulated(main)[0] == first for _ in range(3))


def test_gather_returns_in_argument_order_at_virtual_times() -> None:
    async def main() -> tuple[list[float], float]:
        loop = asyncio.get_running_loop()

        async def after(seconds: float) -> float:
            await asyncio.sleep(seconds)
            return loop.time()

        results = await asyncio.gather(after(3), after(1), after(2))
        return results, loop.time()

    assert run_simulated(main)[0] == ([3.0, 1.0, 2.0], 3.0)


def test_waiting_for_what_never_comes_is_a_deadlock() -> None:
    async def main() -> None:
        await asyncio.Event().wait()

    with pytest.raises(Deadlock):
        run_simulated(main)


def test_threads_are_refused() -> None:
    async def main() -> None:
        await asyncio.to_thread(print, "never")

    with pytest.raises(RuntimeError, match="no threads"):
        run_simulated(main)


def test_a_busy_loop_hits_the_step_budget() -> None:
    async def main() -> None:
        for _ in range(10_000):
            await asyncio.sleep(0)

    with pytest.raises(StepBudgetExceeded):
        run_simulated(main, max_steps=1000)


def test_tasks_hash_by_creation_order_and_remember_their_process() -> None:
    async def main() -> tuple[list[int], list[int]]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, SimLoop)
        context = contextvars.copy_context()
        context.run(current_process.set, "p1")
        parent = loop.create_task(asyncio.sleep(1), context=context)

        async def spawns() -> None:
            await asyncio.gather(asyncio.sleep(1), asyncio.sleep(2))

        tree = loop.create_task(spawns(), context=context)
        await asyncio.sleep(0)
        ids = [t.sim_id for t in loop.tasks_of("p1")]
        hashes = sorted(hash(t) for t in {parent, tree})
        await tree
        return ids, hashes

    (ids, hashes), _ = run_simulated(main)
    assert ids == sorted(ids) and len(ids) == 4  # two tasks, and the two gather made
    assert hashes == sorted(hashes)
