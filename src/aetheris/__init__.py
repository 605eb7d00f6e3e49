"""Aetheris: a durable execution runtime for AI agents.

A crashed worker's run resumes after its last completed step; a side-effecting tool is
dispatched at most once, ever; every operation is an event in a hash-chained journal.
"""

from __future__ import annotations

from aetheris.app import App, JobHandle
from aetheris.client import Client, SyncClient
from aetheris.clock import Clock
from aetheris.context import Context
from aetheris.errors import (
    AetherisError,
    ApprovalRejected,
    ApprovalTimeout,
    AuthError,
    ChildFailed,
    ConfigurationError,
    Conflict,
    ControlSignal,
    DeadlineExceeded,
    EncodingError,
    IdempotencyConflict,
    InvalidInput,
    JobCancelled,
    JobFailed,
    JobNotFound,
    LeaseLost,
    ModelCallFailed,
    ModelError,
    PermissionDenied,
    RetryableError,
    SchemaMismatch,
    ServerError,
    SignalKeyTaken,
    SignalTimeout,
    SignatureInvalid,
    StoreError,
    StoreUnavailable,
    Suspend,
    ToolFailed,
    UnknownAgent,
    WaitError,
)
from aetheris.ledger import Tool, journaled_call
from aetheris.models import Budget
from aetheris.store.port import (
    Control,
    EffectClass,
    EffectState,
    Job,
    JobStatus,
    ParkReason,
    Signal,
)
from aetheris.tools import (
    Committed,
    CompensationRequest,
    NotExecuted,
    RateLimit,
    RetryPolicy,
    ToolContext,
    tool_context,
)
from aetheris.waits import Approval

__version__ = "0.1.0"

__all__ = [
    "AetherisError",
    "App",
    "Approval",
    "ApprovalRejected",
    "ApprovalTimeout",
    "AuthError",
    "Budget",
    "ChildFailed",
    "Client",
    "Clock",
    "Committed",
    "CompensationRequest",
    "ConfigurationError",
    "Conflict",
    "Context",
    "Control",
    "ControlSignal",
    "DeadlineExceeded",
    "EffectClass",
    "EffectState",
    "EncodingError",
    "IdempotencyConflict",
    "InvalidInput",
    "Job",
    "JobCancelled",
    "JobFailed",
    "JobHandle",
    "JobNotFound",
    "JobStatus",
    "LeaseLost",
    "ModelCallFailed",
    "ModelError",
    "NotExecuted",
    "ParkReason",
    "PermissionDenied",
    "RateLimit",
    "RetryPolicy",
    "RetryableError",
    "SchemaMismatch",
    "ServerError",
    "Signal",
    "SignalKeyTaken",
    "SignalTimeout",
    "SignatureInvalid",
    "StoreError",
    "StoreUnavailable",
    "Suspend",
    "SyncClient",
    "Tool",
    "ToolContext",
    "ToolFailed",
    "UnknownAgent",
    "WaitError",
    "__version__",
    "journaled_call",
    "tool_context",
]
