"""Observing the runtime: one narrow interface, called where things happen.

The runtime tells an :class:`Observer` what happens, at the few places where it does:

* a run of a job starts and ends (:meth:`Observer.run_started` gives a :class:`Scope`; its
  ``end`` gets the status the run wrote, or why it stopped short: its lease was lost, ...);
* an operation runs live, from the dispatch to the outcome (a tool, a step, a compensation, a
  model call: :meth:`Observer.operation_started`, ended with tokens and cost for a model call);
* an operation ends without running here (:meth:`Observer.operation_done`): served from the
  journal (``replayed``: never reported as work done), or a wait that ended (``waited``);
* what a worker's leases do (:meth:`Observer.worker_event`): a claim, a takeover of an expired
  lease, a heartbeat, a lease lost, a write refused by the fence.

Metrics (:mod:`aetheris.metrics`) and tracing (:mod:`aetheris.tracing`) implement it; a worker
composes its own observer with those installed in the process (:func:`install`, which is how
``aetheris.tracing.install()`` works: tracing is process-wide in OpenTelemetry anyway). The
default is :data:`NOOP`; the runtime tests for it before building anything to report, so an
unobserved run pays an attribute test per operation. This module imports no metrics or tracing
library, and nothing of the runtime.

:data:`where` (a context variable) holds what the code running now works for: the job, its
fencing token (lease epoch), the journal position of the operation in progress and its W3C
trace context. Log records get it from :class:`aetheris.logs.ContextFilter`, a tool from
``tool_context().traceparent``, the model client's HTTP requests as a ``traceparent`` header.

Rejected designs: hooks per concern (metrics calls here, tracing calls there) would put each
library's vocabulary in the runtime and multiply the call sites; a callback per journal event
(observing commits) sees operations only after they ran, too late for a span that tools and
HTTP requests inherit; logging the job id in each message by hand misses the lines of tools,
libraries and the model client, which the context variable reaches.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = [
    "INTERRUPTED",
    "NOOP",
    "SILENT",
    "Ended",
    "Live",
    "Observer",
    "OperationDone",
    "OperationStarted",
    "RunStarted",
    "Scope",
    "WorkerEvent",
    "WorkerEventKind",
    "combine",
    "install",
    "installed",
    "traceparent",
    "uninstall",
    "where",
]


@dataclass(frozen=True, slots=True)
class RunStarted:
    """A run of a job begins: its ``run`` number (the job's Nth claim) and fencing ``epoch``;
    ``resumed``: an earlier run of the job recorded something (a park, a hand-back, a crash)."""

    job_id: str
    agent: str
    tenant: str
    run: int
    epoch: int
    worker: str
    resumed: bool


@dataclass(frozen=True, slots=True)
class OperationStarted:
    """A durable operation runs live at ``position``: ``kind`` (``tool``, ``step``, ``llm``,
    ``compensation``), its ``name`` (a model call's: the model asked for), ``attempt`` (the
    ledger's attempt of an effect) and ``effect`` class."""

    job_id: str
    position: int
    kind: str
    name: str
    epoch: int
    attempt: int = 1
    effect: str = "pure"


@dataclass(frozen=True, slots=True)
class Ended:
    """How a run or a live operation ended.

    A run's ``outcome``: the status it wrote (``succeeded``, ``failed``, ``compensated``,
    ``cancelled``, ``parked``, ``handed_back``) or why it stopped short (``lease_lost``,
    ``runtime_failure``, ``crashed``, ``interrupted``); ``reason``: a park's reason. An
    operation's: its recorded outcome (``pure``, ``side_effect_committed``,
    ``permanent_failure``, ``compensated``) or ``interrupted`` (cancelled, fenced, the worker
    stopping); ``error``: the failure's type; a model call's ``model``, tokens and ``cost``
    (dollars, ``None``: unknown).
    """

    outcome: str
    error: str | None = None
    reason: str | None = None
    attempts: int = 1
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None


INTERRUPTED = Ended("interrupted")


@dataclass(frozen=True, slots=True)
class OperationDone:
    """An operation that ended without running here: ``replayed`` from the journal (its
    recorded ``outcome``), or a wait (signal, approval, sleep, child) that ended after
    ``waited`` seconds (from when it first parked)."""

    job_id: str
    position: int
    kind: str
    name: str
    epoch: int
    outcome: str
    replayed: bool
    waited: float | None = None


WorkerEventKind = Literal["claimed", "takeover", "heartbeat", "lost", "fenced"]


@dataclass(frozen=True, slots=True)
class WorkerEvent:
    """What a worker's leases did, at wall-clock time ``at``: ``claimed`` a job, a
    ``takeover`` (the claim took another worker's expired lease), a ``heartbeat`` (``leases``
    extended; ``0``: it told the store it lives), a lease ``lost`` (the heartbeat found it
    taken) or a write ``fenced`` (refused: another worker holds the job now)."""

    kind: WorkerEventKind
    worker: str
    at: float
    job_id: str | None = None
    epoch: int | None = None
    leases: int = 0


class Scope(Protocol):
    """A run or an operation in progress, until :meth:`end`. ``traceparent``: its W3C trace
    context (``None`` without tracing), which what runs inside it passes on."""

    @property
    def traceparent(self) -> str | None: ...

    def end(self, ended: Ended) -> None: ...


class Observer(Protocol):
    """What the runtime reports (see the module's docstring). Calls come from the worker's
    event loop; an observer must not block it, nor raise (a failure is the observer's own)."""

    def run_started(self, run: RunStarted) -> Scope: ...

    def operation_started(self, op: OperationStarted) -> Scope: ...

    def operation_done(self, op: OperationDone) -> None: ...

    def worker_event(self, event: WorkerEvent) -> None: ...


class _SilentScope:
    __slots__ = ()
    traceparent: str | None = None

    def end(self, ended: Ended) -> None:
        return None


SILENT: Scope = _SilentScope()


class _Quiet:
    """Observes nothing: the default."""

    def run_started(self, run: RunStarted) -> Scope:
        return SILENT

    def operation_started(self, op: OperationStarted) -> Scope:
        return SILENT

    def operation_done(self, op: OperationDone) -> None:
        return None

    def worker_event(self, event: WorkerEvent) -> None:
        return None


NOOP: Observer = _Quiet()


class _Scopes:
    """The scopes of several observers, as one."""

    __slots__ = ("_scopes", "traceparent")

    def __init__(self, scopes: list[Scope]) -> None:
        self._scopes = scopes
        self.traceparent = next((s.traceparent for s in scopes if s.traceparent), None)

    def end(self, ended: Ended) -> None:
        for scope in reversed(self._scopes):  # the last begun ends first (nested contexts)
            scope.end(ended)


class _Fanout:
    """Several observers as one: each is told everything, in order."""

    def __init__(self, observers: tuple[Observer, ...]) -> None:
        self.observers = observers

    def run_started(self, run: RunStarted) -> Scope:
        return _Scopes([o.run_started(run) for o in self.observers])

    def operation_started(self, op: OperationStarted) -> Scope:
        return _Scopes([o.operation_started(op) for o in self.observers])

    def operation_done(self, op: OperationDone) -> None:
        for observer in self.observers:
            observer.operation_done(op)

    def worker_event(self, event: WorkerEvent) -> None:
        for observer in self.observers:
            observer.worker_event(event)


def combine(*observers: Observer | None) -> Observer:
    """One observer telling each of ``observers`` (``None`` and :data:`NOOP` left out)."""
    found: list[Observer] = []
    for observer in observers:
        if isinstance(observer, _Fanout):
            found.extend(observer.observers)
        elif observer is not None and observer is not NOOP:
            found.append(observer)
    if not found:
        return NOOP
    return found[0] if len(found) == 1 else _Fanout(tuple(found))


_installed: list[Observer] = []


def install(observer: Observer) -> None:
    """Have every worker of this process started from now on tell ``observer`` too."""
    if not any(o is observer for o in _installed):
        _installed.append(observer)


def uninstall(observer: Observer) -> None:
    """Undo :func:`install` (workers already running keep what they were started with)."""
    _installed[:] = [o for o in _installed if o is not observer]


def installed() -> Observer:
    """The observers installed in this process, as one (:data:`NOOP` if none)."""
    return combine(*_installed)


# -- what the code running now works for --------------------------------------------------------


class Live:
    """A run or an operation in progress, bound to :data:`where` in this context until
    :meth:`end` (which unbinds it and ends the observer's scope).

    ``done`` records how the operation ended, for ``end`` to report; without it, ``end``
    reports it ``interrupted``. Both are cheap when nothing observes (``observed`` false).
    """

    __slots__ = (
        "_ended",
        "_scope",
        "_token",
        "epoch",
        "job_id",
        "observed",
        "position",
        "traceparent",
    )

    def __init__(self, job_id: str, epoch: int, position: int | None, scope: Scope) -> None:
        self.job_id = job_id
        self.epoch = epoch
        self.position = position
        self._scope = scope
        self.observed = scope is not SILENT
        self.traceparent = scope.traceparent
        self._ended: Ended | None = None
        self._token: Token[Live | None] = where.set(self)

    def done(self, ended: Ended) -> None:
        self._ended = ended

    def end(self) -> None:
        where.reset(self._token)
        if self.observed:
            self._scope.end(self._ended or INTERRUPTED)


where: ContextVar[Live | None] = ContextVar("aetheris_where", default=None)


def traceparent() -> str | None:
    """The W3C ``traceparent`` of the run or operation in progress, if it is traced."""
    found = where.get()
    return found.traceparent if found is not None else None
