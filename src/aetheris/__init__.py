"""Aetheris: a durable execution runtime for AI agents.

A crashed worker's run resumes after its last completed step; a side-effecting tool is
dispatched at most once, ever; every operation is an event in a hash-chained journal.
"""

from __future__ import annotations

from aetheris.app import App, JobHandle
from aetheris.context import Context, ToolContext, tool_context
from aetheris.effects import (
    Committed,
    CompensationRequest,
    NotExecuted,
    RetryPolicy,
    Tool,
)
from aetheris.errors import (
    AetherisError,
    ConfigurationError,
    Conflict,
    ControlSignal,
    EncodingError,
    IdempotencyConflict,
    InvalidInput,
    JobFailed,
    JobNotFound,
    LeaseLost,
    RetryableError,
    SchemaMismatch,
    StoreError,
    StoreUnavailable,
    Suspend,
    ToolFailed,
    UnknownAgent,
)
from aetheris.store.port import EffectClass, EffectState, Job, JobStatus, ParkReason

__version__ = "0.1.0"

__all__ = [
    "AetherisError",
    "App",
    "Committed",
    "CompensationRequest",
    "ConfigurationError",
    "Conflict",
    "Context",
    "ControlSignal",
    "EffectClass",
    "EffectState",
    "EncodingError",
    "IdempotencyConflict",
    "InvalidInput",
    "Job",
    "JobFailed",
    "JobHandle",
    "JobNotFound",
    "JobStatus",
    "LeaseLost",
    "NotExecuted",
    "ParkReason",
    "RetryPolicy",
    "RetryableError",
    "SchemaMismatch",
    "StoreError",
    "StoreUnavailable",
    "Suspend",
    "Tool",
    "ToolContext",
    "ToolFailed",
    "UnknownAgent",
    "__version__",
    "tool_context",
]
