"""The public API is curated: adding or removing a name is a decision, made here."""

from __future__ import annotations

import aetheris
import aetheris.testing

EXPECTED = {
    "journaled_call",
    "Budget",
    "ModelCallFailed",
    "ModelError",
    "Clock",
    "AetherisError",
    "App",
    "AuthError",
    "Client",
    "PermissionDenied",
    "ServerError",
    "SyncClient",
    "Approval",
    "ApprovalRejected",
    "ApprovalTimeout",
    "ChildFailed",
    "Control",
    "DeadlineExceeded",
    "JobCancelled",
    "Signal",
    "SignalTimeout",
    "SignalKeyTaken",
    "SignatureInvalid",
    "WaitError",
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
    "RateLimit",
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
}


def test_exported_members() -> None:
    assert set(aetheris.__all__) == EXPECTED
    for name in aetheris.__all__:
        assert hasattr(aetheris, name), name


def test_testing_kit_members() -> None:
    assert set(aetheris.testing.__all__) == {
        "ReplayFailed",
        "ReplayReport",
        "Replayer",
        "SimulatedCrash",
        "replay",
        "running_worker",
        "simulate_crash",
    }


def test_control_signals_escape_except_exception() -> None:
    for signal in (
        aetheris.LeaseLost,
        aetheris.Suspend,
        aetheris.testing.SimulatedCrash,
        aetheris.JobCancelled,
        aetheris.DeadlineExceeded,
    ):
        assert issubclass(signal, BaseException)
        assert not issubclass(signal, Exception)
