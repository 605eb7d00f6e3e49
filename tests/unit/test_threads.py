"""The threads that run plain-function bodies: the caller's context, its errors, as many
bodies at once as callers (up to a cap, then a backlog), and idle threads that end."""

from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import threading
import time
from typing import Any

import pytest

from aetheris.threads import BODY_THREADS, BodyThreads

who: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


async def test_a_body_runs_in_another_thread_in_a_copy_of_the_callers_context() -> None:
    pool = BodyThreads()
    who.set("job-1")

    def body(x: int) -> tuple[int, str, int]:
        seen = who.get()
        who.set("changed in the thread")
        return x * 2, seen, threading.get_ident()

    doubled, seen, ident = await pool.run(body, 21)
    assert (doubled, seen) == (42, "job-1")
    assert ident != threading.get_ident()
    assert who.get() == "job-1"  # a copy: what the body set stays there


async def test_one_thread_serves_calls_made_one_after_another() -> None:
    pool = BodyThreads()
    idents = {await pool.run(threading.get_ident) for _ in range(20)}
    assert len(idents) == 1 and pool.threads == 1


async def test_the_caller_gets_what_the_body_raised() -> None:
    pool = BodyThreads()

    def fails() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        await pool.run(fails)

    def stops() -> None:
        raise StopIteration  # a future cannot hold one: it would never settle

    with pytest.raises(RuntimeError, match="StopIteration"):
        await pool.run(stops)


async def test_as_many_bodies_run_at_once_as_callers_wait() -> None:
    # asyncio's default pool holds min(32, cores + 4) threads: 6 on 2 cores, so 20 bodies that
    # wait for each other never all met.
    pool, barrier = BodyThreads(), threading.Barrier(20, timeout=10)
    await asyncio.gather(*(pool.run(barrier.wait) for _ in range(20)))
    assert pool.threads == 20


async def test_past_the_cap_calls_wait_in_a_backlog() -> None:
    pool, running, peak = BodyThreads(max_threads=2), [0], [0]
    lock = threading.Lock()

    def body(i: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return i

    assert await asyncio.gather(*(pool.run(body, i) for i in range(7))) == list(range(7))
    assert peak[0] == 2 and pool.threads == 2


async def test_a_call_cancelled_before_it_began_never_begins() -> None:
    pool, release, ran = BodyThreads(max_threads=1), threading.Event(), []
    first = asyncio.ensure_future(pool.run(release.wait, 10))
    await asyncio.sleep(0.05)  # the only thread is busy: the next call waits in the backlog
    second = asyncio.ensure_future(pool.run(ran.append, "second"))
    await asyncio.sleep(0.01)
    second.cancel()
    release.set()
    assert await first is True
    assert await pool.run(ran.append, "third") is None
    assert ran == ["third"] and second.cancelled()


async def test_an_idle_thread_ends() -> None:
    pool = BodyThreads(idle_seconds=0.05)
    await pool.run(int)
    assert pool.threads == 1
    for _ in range(250):  # up to 5 s
        if not pool.threads:
            break
        await asyncio.sleep(0.02)
    assert pool.threads == 0
    assert await pool.run(int, "7") == 7  # and a new one starts for the next call


class _NoThreadsLoop(asyncio.SelectorEventLoop):
    """A loop that takes nothing from other threads, as the simulator's refuses them."""

    def call_soon_threadsafe(self, callback: Any, *args: Any, context: Any = None) -> Any:
        raise RuntimeError("this loop runs no threads")


def test_a_loop_that_takes_nothing_from_threads_refuses_before_any_thread_starts() -> None:
    pool, ran = BodyThreads(), []
    loop = _NoThreadsLoop()
    try:
        with pytest.raises(RuntimeError, match="runs no threads"):
            loop.run_until_complete(pool.run(ran.append, "body"))
    finally:
        loop.close()
    assert ran == [] and pool.threads == 0


def test_a_forked_child_starts_threads_of_its_own() -> None:
    # The parent's threads do not come along into a forked child: an idle one's inbox there
    # would take a call and never answer it.
    async def call() -> int:
        return await BODY_THREADS.run(int, "7")

    assert asyncio.run(call()) == 7 and BODY_THREADS.threads >= 1
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if its call is answered
        signal.alarm(10)
        os._exit(0 if asyncio.run(call()) == 7 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
