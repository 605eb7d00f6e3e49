"""The operator: starts jobs and acts on them through the public ``App`` API of its own App.

In the chaos phase it follows the seed's schedule: cancels, pauses, resumes, signals (the right
name, a duplicate, one nobody waits for), approvals (pending, early with a guessed position, a
raw ``approval:N`` signal, rejections), honest resolutions of in-doubt effects, SIGTERMs. In the
quiet phase it unblocks everything honestly: the awaited signal, approval of exactly the pending
request, the truth about each in-doubt effect (from the world ledger), resume, and a cancel of
jobs parked on nondeterminism.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aetheris import AetherisError, Job, JobStatus, ParkReason, StoreUnavailable
from tests.sim.catalog import AGENT
from tests.sim.config import Action
from tests.sim.workload import approval_positions

if TYPE_CHECKING:
    from aetheris import App
    from tests.sim.sim import Sim

Act = Callable[["Operator", Action], Awaitable[None]]


class Operator:
    """A person with the ``App`` API, a view of the world ledger, and a schedule."""

    def __init__(self, sim: Sim, app: App) -> None:
        self.sim = sim
        self.app = app
        self.count = 0
        self.side_tasks: list[asyncio.Task[Any]] = []

    async def attempt(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """One API call; a refusal or an outage is recorded in the trace, not raised."""
        try:
            result = await call()
        except AetherisError as exc:
            self.sim.trace.add("op_refused", what=what, error=type(exc).__name__)
            return None
        self.sim.trace.add("op", what=what)
        return result

    def pick(self, target: int) -> str | None:
        """A job the simulation knows of, by index (wrapping around)."""
        jobs = self.sim.job_ids
        return jobs[target % len(jobs)] if jobs else None

    async def run(self, schedule: list[Action]) -> None:
        """Carry out ``schedule`` (sorted by time) at its virtual times, each on its own."""
        loop = asyncio.get_running_loop()
        doing = []
        for action in schedule:
            if action.at > loop.time():
                await asyncio.sleep(action.at - loop.time())
            self.count += 1
            doing.append(loop.create_task(ACTIONS[action.kind](self, action)))
        await asyncio.gather(*doing)

    # -- chaos-phase actions -----------------------------------------------------------------

    async def start(self, action: Action) -> None:
        """Start a workload job (retried through outages)."""
        spec = self.sim.workload.jobs[action.target]
        for _ in range(200):
            try:
                await self.app.start(
                    AGENT,
                    {"plan": spec.plan},
                    job_id=spec.id,
                    idempotency_key=spec.id,
                    deadline=spec.deadline,
                )
            except StoreUnavailable:
                await asyncio.sleep(0.5)
                continue
            self.sim.trace.add("op", what=f"start {spec.id}")
            return
        self.sim.violate("operator_gave_up", f"could not start {spec.id}")

    async def control(self, action: Action) -> None:
        """Cancel, pause or resume some job."""
        job_id = self.pick(action.target)
        if job_id is not None:
            call = {"cancel": self.app.cancel, "pause": self.app.pause, "resume": self.app.resume}
            await self.attempt(f"{action.kind} {job_id}", lambda: call[action.kind](job_id))

    async def cancel_child(self, action: Action) -> None:
        """Cancel the next child job as soon as it appears (it has not started yet)."""
        self.sim.cancel_next_child = True

    def child_appeared(self, job_id: str) -> None:
        """A child job was just created: cancel it before it starts."""
        self.sim.cancel_next_child = False
        loop = asyncio.get_running_loop()
        cancel = self.attempt(f"cancel {job_id}", lambda: self.app.cancel(job_id))
        self.side_tasks.append(loop.create_task(cancel, context=self.sim.root_context.copy()))

    async def cancel_stuck(self, action: Action) -> None:
        """Cancel a running job whose lease has expired (its worker looks frozen)."""
        jobs = await self.attempt("list", lambda: self.app.list_jobs(status=JobStatus.RUNNING))
        now = self.sim.clock.time()
        stuck = sorted(j.id for j in jobs or [] if (j.lease_expires_at or now) < now)
        job_id = stuck[action.target % len(stuck)] if stuck else self.pick(action.target)
        if job_id is not None:
            await self.attempt(f"cancel {job_id}", lambda: self.app.cancel(job_id))

    async def cancel_pending(self, action: Action) -> None:
        """Cancel a job that has not started yet."""
        jobs = await self.attempt("list", lambda: self.app.list_jobs(status=JobStatus.PENDING))
        fresh = sorted(j.id for j in jobs or [] if j.attempts == 0)
        if fresh:
            job_id = fresh[action.target % len(fresh)]
            await self.attempt(f"cancel {job_id}", lambda: self.app.cancel(job_id))

    async def signal(self, action: Action) -> None:
        """Send a signal (possibly twice with one id, or a name nobody waits for)."""
        job_id = self.pick(action.target)
        if job_id is None:
            return
        signal_id = f"op-{self.count}"
        payload = {"from": "operator", "n": self.count}
        for _ in range(2 if action.kind == "signal_dup" else 1):
            await self.attempt(
                f"signal {action.arg} {job_id}",
                lambda: self.app.signal(job_id, action.arg, payload, signal_id=signal_id),
            )

    async def approve(self, action: Action) -> None:
        """Approve the pending request, approve early or raw, or reject."""
        jobs = self.sim.workload.jobs
        spec = jobs[action.target % len(jobs)]
        job_id = spec.id if action.kind in ("approve_early", "approve_raw") else None
        job_id = job_id or self.pick(action.target)
        if job_id is None:
            return
        app = self.app
        guesses = approval_positions(spec.plan) or [0]
        position = guesses[(action.arg or 0) % len(guesses)]
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "approve": lambda: self._approve_pending(job_id),
            "approve_early": lambda: app.approve(job_id, position=position, by="early"),
            "approve_raw": lambda: app.signal(
                job_id, f"approval:{position}", {"decision": "approved", "by": "raw"}
            ),
            "reject": lambda: app.reject(job_id, by="operator", reason="not today"),
        }
        await self.attempt(f"{action.kind} {job_id}", calls[action.kind])

    async def _approve_pending(self, job_id: str) -> Any:
        job = await self.app.get_job(job_id)
        detail = job.park_detail or {}
        if job.park_reason is not ParkReason.APPROVAL:
            return await self.app.approve(job_id, by="operator")  # refused: nothing pending
        return await self.app.approve(
            job_id, position=detail["position"], args_hash=detail["args_hash"], by="operator"
        )

    async def resolve(self, action: Action) -> None:
        """Resolve the in-doubt effect a job is parked on, honestly."""
        job_id = self.pick(action.target)
        if job_id is not None:
            job = await self.attempt("get", lambda: self.app.get_job(job_id))
            if job is not None:
                await self.resolve_honestly(job, action.arg)

    async def resolve_honestly(self, job: Job, otherwise: str = "not_executed") -> None:
        """Settle the in-doubt effect a job is parked on with the truth from the world."""
        if job.park_reason is not ParkReason.EFFECT_IN_DOUBT or not job.park_detail:
            return
        detail = job.park_detail
        answer, result = self.sim.world.honest_answer(detail["idempotency_key"])
        if answer == "unknown":
            return  # still in flight somewhere: an honest operator waits
        options: dict[str, Any] = {"by": "operator"}
        if answer == "committed":
            options.update(committed=True, result=result)
        elif otherwise == "fail":
            options.update(fail=True, reason="did not happen; give up")
        else:
            options.update(not_executed=True)
        self.sim.probe(f"resolved_{answer if answer == 'committed' else otherwise}")
        position = detail["position"]
        await self.attempt(
            f"resolve {job.id}:{position} {answer}",
            lambda: self.app.resolve_effect(job.id, position, **options),
        )

    async def sigterm(self, action: Action) -> None:
        """Ask one worker process to stop gracefully."""
        live = self.sim.supervisor.live()
        if len(live) > 1:  # keep one worker: a SIGTERM is a deploy, not an outage
            live[action.target % len(live)].stop()

    # -- the quiet phase -----------------------------------------------------------------------

    async def settle(self, job: Job) -> None:
        """Unblock one parked job honestly."""
        detail = job.park_detail or {}
        reason = job.park_reason
        if reason is ParkReason.SIGNAL:
            position = detail.get("position")
            await self.attempt(
                f"signal {detail['signal']} {job.id}",
                lambda: self.app.signal(
                    job.id, detail["signal"], {"quiet": True}, signal_id=f"quiet-{position}"
                ),
            )
        elif reason is ParkReason.APPROVAL:
            await self.attempt(
                f"approve {job.id}",
                lambda: self.app.approve(
                    job.id, position=detail["position"], args_hash=detail["args_hash"], by="q"
                ),
            )
        elif reason is ParkReason.EFFECT_IN_DOUBT:
            await self.resolve_honestly(job)
        elif reason is ParkReason.PAUSED:
            await self.attempt(f"resume {job.id}", lambda: self.app.resume(job.id))
        elif reason is ParkReason.NONDETERMINISM:
            await self.attempt(f"cancel {job.id}", lambda: self.app.cancel(job.id))


ACTIONS: dict[str, Act] = {
    "start": Operator.start,
    "cancel": Operator.control,
    "pause": Operator.control,
    "resume": Operator.control,
    "cancel_pending": Operator.cancel_pending,
    "cancel_child": Operator.cancel_child,
    "cancel_stuck": Operator.cancel_stuck,
    "signal": Operator.signal,
    "signal_dup": Operator.signal,
    "signal_wrong": Operator.signal,
    "approve": Operator.approve,
    "approve_early": Operator.approve,
    "approve_raw": Operator.approve,
    "reject": Operator.approve,
    "resolve": Operator.resolve,
    "sigterm": Operator.sigterm,
}
