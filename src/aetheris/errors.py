"""Every error Aetheris raises, in one tree.

Errors (``Exception``) are things a caller can handle::

    AetherisError
    ├── ConfigurationError      bad database URL, bad ``MOD:APP`` spec, bad registration
    ├── InvalidInput            input that is not a JSON object, fails validation, or is too large
    │   └── EncodingError       a value that has no canonical JSON form (NaN, a socket, ...)
    ├── UnknownAgent            no agent of that name is registered
    ├── JobNotFound             no job with that id
    ├── WebhookNotFound         no webhook subscription with that id (of the caller's tenant)
    ├── IdempotencyConflict     the idempotency key is taken by a job with other arguments
    ├── Conflict                a control-plane action whose precondition no longer holds
    ├── ToolFailed              a tool or step failed for good (live and on replay alike)
    ├── CompensationFailed      a compensation failed for good: the job ends failed with it
    ├── BundleError             an evidence bundle is malformed or does not verify
    ├── ReplayFailed            saved journals that do not replay against the code (test kit)
    ├── PayloadUnreadable       a stored payload does not decode here (altered, wrong key)
    │   └── PayloadShredded     its key was destroyed: the payload is gone for good
    ├── ModelError              a model endpoint did not answer a chat completion
    ├── WaitError               a durable wait ended without what it waited for:
    │   ├── SignalTimeout       ``wait_for_signal(timeout=...)`` ran out
    │   ├── SignalKeyTaken      another job already waits for that signal with that key
    │   ├── ApprovalRejected    a human rejected the request
    │   ├── ApprovalTimeout     nobody decided before the deadline (after any escalation)
    │   └── ChildFailed         a child agent ended without succeeding
    ├── JobFailed               ``handle.result()`` of a job that did not succeed
    ├── SignatureInvalid        an incoming webhook's signature is missing, wrong or expired
    ├── AuthError               the server refused the client's API key (missing, unknown, revoked)
    │   └── PermissionDenied    the key's role may not do that
    ├── ServerError             the server did not answer, or answered with its own failure
    └── StoreError              the database failed; driver errors are translated into these
        ├── StoreUnavailable    cannot reach or open the database
        └── SchemaMismatch      the schema is older or newer than this code

Control-flow signals derive from ``BaseException`` so that agent code's ``except Exception``
cannot swallow them::

    ControlSignal
    ├── LeaseLost               another worker owns the job now: stop, dispatch nothing more
    ├── Suspend                 the job parks (waits for a human, an operator, a timer)
    ├── JobCancelled            an operator cancelled the job: compensate and end ``cancelled``
    ├── DeadlineExceeded        the job's deadline passed: compensate and end as failed
    ├── Draining                the worker is stopping: start nothing new, hand the job back
    ├── RuntimeFailure          the runtime itself failed (the database, a bug of ours): the
    │                           run stops outside agent code; the job is handed back and retried
    ├── ReplayEnded             a replay reached the end of the journal: nothing live may run
    └── SimulatedCrash          crash injection in-process: the worker dies, writing nothing

A runtime failure is never an exception agent code could catch, and never recorded as the
agent's own failure: a job whose runs keep failing this way (or whose workers keep dying) is
failed as ``PoisonJob`` after ``max_recoveries``.
"""

from __future__ import annotations

from typing import Any

from aetheris.models import ParkReason


class AetherisError(Exception):
    """Root of every error raised by Aetheris."""


class ConfigurationError(AetherisError):
    """The runtime was configured or used in a way that cannot work."""


class InvalidInput(AetherisError):
    """Input rejected before anything was written."""


class EncodingError(InvalidInput):
    """A value cannot be encoded as canonical JSON."""


class UnknownAgent(AetherisError):
    """No agent of that name is registered."""

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        self.name = name
        self.known = sorted(known or [])
        hint = f" (known agents: {', '.join(self.known)})" if self.known else ""
        super().__init__(f"unknown agent {name!r}{hint}")


class JobNotFound(AetherisError):
    """No job with this id exists."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id!r} not found")


class WebhookNotFound(AetherisError):
    """No webhook subscription with this id exists (or none the caller's tenant may see)."""

    def __init__(self, webhook_id: str) -> None:
        self.webhook_id = webhook_id
        super().__init__(f"webhook {webhook_id!r} not found")


class IdempotencyConflict(AetherisError):
    """An idempotency key was reused for a different agent or input."""


class Conflict(AetherisError):
    """A control-plane action's precondition does not hold (e.g. resolving an effect twice)."""


class ToolFailed(AetherisError):
    """A tool or step failed permanently.

    Agent code sees the same exception live and on replay: the original exception's type name
    and message are recorded in the journal; ``__cause__`` is only set on the live path.
    """

    def __init__(self, name: str, error_type: str, message: str, *, position: int) -> None:
        self.name = name
        self.error_type = error_type
        self.message = message
        self.position = position
        super().__init__(f"{name} failed at position {position}: {error_type}: {message}")


class ModelCallFailed(ToolFailed):
    """A model call failed for good (after the client's own retries). Recorded at its
    position and raised again on replay; agent code may catch it like a tool's failure."""


class CompensationFailed(AetherisError):
    """A registered compensation failed for good; the job ends failed with this."""


class BundleError(AetherisError):
    """An evidence bundle is malformed or its hash chain does not verify."""


class ReplayFailed(AetherisError):
    """Saved journals that do not replay against the code (:class:`aetheris.testing.Replayer`).

    ``reports`` holds every journal's :class:`~aetheris.replay.ReplayReport`, the ones that
    replayed too."""

    def __init__(self, message: str, reports: list[Any]) -> None:
        super().__init__(message)
        self.reports = reports


class PayloadUnreadable(AetherisError):
    """A stored payload cannot be decoded: altered bytes, or a key that is not its own."""


class PayloadShredded(PayloadUnreadable):
    """The payload's key was destroyed (crypto-shredding): it can never be read again."""


class ModelError(AetherisError):
    """A model endpoint did not answer a chat completion (after any retries).

    ``status`` is the HTTP status, or ``None`` when no response came (a timeout, a refused or
    broken connection); ``retryable`` says whether asking again later may succeed. The message
    names the endpoint's URL (never its key) and the server's own words.
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False):
        self.status = status
        self.retryable = retryable
        super().__init__(message)


class WaitError(AetherisError):
    """A durable wait ended without what it waited for (raised live and on replay alike)."""

    def __init__(self, message: str, *, position: int, detail: dict[str, Any] | None = None):
        self.position = position
        self.detail = detail or {}
        super().__init__(message)


class SignalTimeout(WaitError):
    """``ctx.wait_for_signal(name, timeout=...)`` ran out before a signal came."""


class SignalKeyTaken(WaitError):
    """``ctx.wait_for_signal(name, key=...)``: another job of the tenant, still running, holds
    that key (the first job to wait on a key holds it until it ends); ``detail["held_by"]``."""


class ApprovalRejected(WaitError):
    """A human rejected the approval request (``detail`` says who, when and why)."""


class ApprovalTimeout(WaitError):
    """Nobody decided on the approval request before its deadline."""


class ChildFailed(WaitError):
    """A child agent started with ``ctx.run_agent`` ended without succeeding."""


class SignatureInvalid(AetherisError):
    """An incoming webhook request's signature is missing, malformed, wrong or outside the
    timestamp tolerance (see :mod:`aetheris.signing`): the request is not authenticated."""


class JobFailed(AetherisError):
    """The job ended without succeeding (failed, compensated or cancelled)."""

    def __init__(self, job_id: str, status: str, error: dict[str, Any] | None) -> None:
        self.job_id = job_id
        self.status = status
        self.error = error or {}
        detail = f"{self.error.get('type', '')}: {self.error.get('message', '')}".strip(": ")
        super().__init__(f"job {job_id} ended {status}" + (f" ({detail})" if detail else ""))


class AuthError(AetherisError):
    """The Aetheris server refused the API key: missing, unknown or revoked (HTTP 401)."""


class PermissionDenied(AuthError):
    """The API key is valid but its role may not do this (HTTP 403): ``role`` and ``action``
    say which, when the server named them."""

    def __init__(self, message: str, *, role: str | None = None, action: str | None = None):
        self.role = role
        self.action = action
        super().__init__(message)


class ServerError(AetherisError):
    """The Aetheris server could not be reached, or failed (``status`` 5xx, or ``None`` when no
    response came), or answered with something that is not the API's."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class StoreError(AetherisError):
    """The database failed."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or opened."""


class SchemaMismatch(StoreError):
    """The database schema version does not match this code."""


class RetryableError(Exception):
    """Raise from a tool to say: nothing happened, trying again is safe.

    For ``at_most_once`` tools this is the only exception that is retried: any other exception
    means the tool ran and failed, and the failure is recorded as its outcome.
    """


class ControlSignal(BaseException):
    """Base of control-flow signals; not an ``Exception`` on purpose."""


class LeaseLost(ControlSignal):
    """A fenced write found another lease epoch: this worker no longer owns the job."""

    def __init__(self, job_id: str, epoch: int) -> None:
        self.job_id = job_id
        self.epoch = epoch
        super().__init__(f"lease on job {job_id} at epoch {epoch} was lost")


class Suspend(ControlSignal):
    """Unwinds agent code so that the job can park without holding a worker.

    ``wake_on`` names what unparks it (``signal:<name>``, ``job:<id>``), ``wake_at`` when it
    becomes due anyway, and ``wait`` a ``(position, data)`` to journal as the wait's start.
    """

    def __init__(
        self,
        reason: ParkReason,
        detail: dict[str, Any],
        *,
        wake_on: str | None = None,
        wake_at: float | None = None,
        wait: tuple[int, dict[str, Any]] | None = None,
    ) -> None:
        self.reason = reason
        self.detail = detail
        self.wake_on = wake_on
        self.wake_at = wake_at
        self.wait = wait
        super().__init__(f"parked: {reason}")


class JobCancelled(ControlSignal):
    """An operator cancelled the job; raised at the agent's next durable operation."""


class DeadlineExceeded(ControlSignal):
    """The job's deadline passed; raised at the agent's next durable operation."""


class Draining(ControlSignal):
    """The worker is stopping: raised instead of starting a new durable operation."""


class RuntimeFailure(ControlSignal):
    """The runtime failed while running a job; ``__cause__`` is the original error.

    Raised where a store error (after any outage was waited out), a refused write or a bug of
    the runtime would otherwise surface in agent code. The worker hands the job back.
    """


class ReplayEnded(ControlSignal):
    """A replay-only run reached the end of the recorded prefix; nothing live may run."""

    def __init__(self, position: int) -> None:
        self.position = position
        super().__init__(f"the journal ends before position {position}")


class SimulatedCrash(ControlSignal):
    """Raised instead of SIGKILL when crash injection is armed in-process."""
