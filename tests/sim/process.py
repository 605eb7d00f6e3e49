"""Simulated processes: an ``App`` and its ``Worker`` on the simulated loop, killable and pausable.

A process owns its store object (wrapped in a :class:`~tests.sim.faulty.FaultyStore`) and every
task it creates (tracked by the loop through a context variable). A *kill* makes its store
dead (every later call raises :class:`ProcessKilled` and writes nothing), cancels its whole task
tree and, on SQLite, drops its presence lock without ceremony, as the kernel does for a dead
process, so that the store's reaper can prove it dead. A *pause* (a zombie, as after SIGSTOP)
blocks its store calls and tools until it resumes, past its lease: its writes must then be
fenced. A *stop* is SIGTERM: ``Worker.stop()``, then the process exits on its own.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aetheris import App
from aetheris.testing import SimulatedCrash
from tests.sim import catalog
from tests.sim.config import Fault
from tests.sim.faulty import FaultyStore
from tests.sim.loop import SimLoop, current_process

if TYPE_CHECKING:
    from tests.sim.sim import Sim

GRACE = 6.0  # a graceful stop's grace period: longer than any tool call takes
MAX_PROCESSES = 12


class ProcessKilled(SimulatedCrash):
    """Raised by every store call and tool of a killed process."""


class SimProcess:
    """One simulated worker process (or the operator's, which runs no worker)."""

    def __init__(
        self, sim: Sim, index: int, version: int, inner: Any, *, worker: bool = True
    ) -> None:
        config = sim.config
        self.sim = sim
        self.index = index
        self.name = f"p{index}" if worker else "operator"
        self.owner = f"sim-worker-{index}"
        self.version = version
        self.inner = inner
        self.faultable = worker
        self.alive = True
        self.halted = False
        self.stopping = False
        self.paused_until = 0.0
        self.stopped_at: float | None = None
        self.calls: set[tuple[str, int]] = set()  # (job, position) of every tool call begun
        self.app = catalog.install(
            App(
                inner.url,
                lease_ttl=config.lease_ttl,
                poll_interval=config.poll_interval,
                max_recoveries=config.max_recoveries,
                name=self.name,
                clock=sim.clock,
            ),
            version,
        )
        self.store = FaultyStore(inner, self, sim)
        # The App has no public seam to take a store object yet: set its private slot, the
        # one place this simulation reaches inside the runtime.
        self.app._store = self.store  # type: ignore[assignment]
        self.worker = self.app.worker(
            concurrency=config.concurrency,
            lease_ttl=config.lease_ttl,
            poll_interval=config.poll_interval,
            grace=GRACE,
            owner=self.owner,
            reap_interval=2.0,
            # A deploy here retires the old code's workers for good: a job the new code cannot
            # replay would have no worker to be handed back to. Run it and park it instead.
            on_new_code="proceed",
        )
        self.task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<SimProcess {self.name} v{self.version}>"

    @property
    def loop(self) -> SimLoop:
        """The simulated loop this process runs on."""
        loop = asyncio.get_running_loop()
        assert isinstance(loop, SimLoop)
        return loop

    def start(self) -> None:
        """Run the worker as a task tree of its own."""
        context = self.sim.root_context.copy()
        context.run(current_process.set, self)
        self.task = self.loop.create_task(self._main(), context=context)

    async def _main(self) -> None:
        try:
            await self.worker.run()
        except (ProcessKilled, asyncio.CancelledError):
            pass
        except Exception as exc:
            self.sim.violate("worker_crashed", f"{self.name}: {type(exc).__name__}: {exc}")
        finally:
            self.sim.supervisor.exited(self)

    # -- what happens to a process ------------------------------------------------------------

    def check_alive(self) -> None:
        """Raise :class:`ProcessKilled` if the process is dead."""
        if not self.alive:
            raise ProcessKilled(f"{self.name} is dead")

    async def ready(self) -> None:
        """Return when this process may act: raise if it is dead, block while it is paused."""
        self.check_alive()
        loop = self.loop
        # Within the loop's clock resolution a timer fires without the clock reaching its time:
        # waiting for a remainder that small would spin at one instant forever.
        while self.paused_until > loop.time() + loop._clock_resolution:
            await asyncio.sleep(self.paused_until - loop.time())
            self.check_alive()

    def kill(self, fault: Fault | None = None) -> ProcessKilled:
        """kill -9: dead store, task tree cancelled; returns the exception for the caller."""
        if self.alive:
            self.alive = False
            self.sim.trace.add("kill", proc=self.name, halt=self.halted)
            if not self.halted:
                self.sim.probe("kill")
            current = asyncio.current_task()
            for task in self.loop.tasks_of(self):
                if task is not current:
                    task.cancel()
            self._drop_presence()
            if fault is not None:
                self.sim.supervisor.replace_later(fault.restart)
        return ProcessKilled(f"{self.name} was killed")

    def halt(self) -> None:
        """End of the run: stop the process without it counting as a fault."""
        self.halted = True
        self.kill()

    def _drop_presence(self) -> None:
        if self.sim.config.store != "sqlite":
            return
        coro = self.inner.unregister_worker(self.owner, graceful=False)
        self.loop.create_task(coro, context=self.sim.root_context.copy())

    def pause(self, seconds: float) -> None:
        """Freeze the process (SIGSTOP) for ``seconds``: its store calls and tools block."""
        now = self.loop.time()
        if self.paused_until <= now:
            self.sim.probe("zombie")
        self.paused_until = max(self.paused_until, now + seconds)
        self.sim.trace.add("pause", proc=self.name, until=round(self.paused_until, 6))

    def stop(self) -> None:
        """SIGTERM: the worker stops claiming and finishes (or releases) what it runs."""
        if self.alive and not self.stopping:
            self.stopping = True
            self.stopped_at = self.loop.time()
            self.sim.trace.add("sigterm", proc=self.name)
            self.sim.probe("sigterm")
            self.worker.stop()

    @property
    def paused_since_stop(self) -> bool:
        """Whether a pause overlapped the grace period (a tool may then outlive it)."""
        return self.stopped_at is not None and self.paused_until > self.stopped_at

    @property
    def healthy(self) -> bool:
        """Alive, not stopping, and its worker still running."""
        return self.alive and not self.stopping and self.task is not None and not self.task.done()


class Supervisor:
    """Starts worker processes and replaces the ones that die or stop."""

    def __init__(self, sim: Sim, make_store: Any) -> None:
        self.sim = sim
        self.make_store = make_store
        self.processes: list[SimProcess] = []
        self.started = 0

    def version_for(self, index: int) -> int:
        """v1 on the first processes; with a code change, v2 on every process started later."""
        if self.sim.config.enabled("code_change") and index >= self.sim.config.processes:
            return 2
        return 1

    def live(self) -> list[SimProcess]:
        """The healthy worker processes."""
        return [p for p in self.processes if p.healthy]

    def awake(self) -> list[SimProcess]:
        """The healthy worker processes that are not frozen right now."""
        now = asyncio.get_running_loop().time()
        return [p for p in self.live() if p.paused_until <= now]

    async def spawn(self, *, force: bool = False) -> SimProcess | None:
        """Start the next process (at most ``MAX_PROCESSES`` per run unless ``force``)."""
        if self.started >= MAX_PROCESSES and not force:
            return None
        index = self.started
        self.started += 1
        inner = await self.make_store()
        process = SimProcess(self.sim, index, self.version_for(index), inner)
        self.processes.append(process)
        self.sim.trace.add("start", proc=process.name, version=process.version)
        process.start()
        return process

    def replace_later(self, delay: float) -> None:
        """Start a replacement after ``delay`` seconds if one is missing."""
        loop = asyncio.get_running_loop()
        loop.call_later(delay, self._replace, context=self.sim.root_context.copy())

    def _replace(self) -> None:
        if self.sim.finished or len(self.live()) >= self.sim.config.processes:
            return
        asyncio.get_running_loop().create_task(self.spawn(), context=self.sim.root_context.copy())

    def exited(self, process: SimProcess) -> None:
        """A process's worker returned (stopped, killed or crashed)."""
        self.sim.trace.add("exit", proc=process.name)
        if process.stopping and process.alive and not process.halted:
            self.replace_later(1.0)

    async def ensure_one(self) -> None:
        """The quiet phase needs one healthy worker: start one if none is left."""
        if not self.live():
            await self.spawn(force=True)

    def halt_all(self) -> None:
        """Stop every process at the end of the run."""
        for process in self.processes:
            process.halt()
