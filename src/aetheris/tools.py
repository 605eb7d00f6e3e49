"""What a tool is: its definition, its retry policy, what ``reconcile`` and ``compensate`` get,
and what a running tool may know of its call (:func:`tool_context`).

The journaling of a call lives in :mod:`aetheris.ledger`; this module holds the definitions it
works from, and nothing that runs.
"""

from __future__ import annotations

import contextlib
import inspect
import types
import typing
import weakref
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, cast

from pydantic import PydanticUserError, TypeAdapter, create_model
from pydantic.errors import PydanticSchemaGenerationError

from aetheris import observe
from aetheris.errors import AetherisError, ConfigurationError, RetryableError
from aetheris.store.port import EffectClass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter for errors raised before any effect happened.

    ``at_most_once`` tools are retried only for :class:`~aetheris.RetryableError`: any other
    exception means the tool ran and failed, so the failure is its outcome.
    """

    max_attempts: int = 3
    initial_interval: float = 0.2
    backoff: float = 2.0
    max_interval: float = 30.0
    jitter: float = 0.2
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    give_up_on: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError("RetryPolicy.max_attempts must be at least 1")

    def allows(self, exc: BaseException, attempt: int, effect: EffectClass) -> bool:
        """Whether a failure on ``attempt`` (1-based) may be followed by another attempt."""
        if attempt >= self.max_attempts or isinstance(exc, self.give_up_on):
            return False
        if effect is EffectClass.AT_MOST_ONCE:
            return isinstance(exc, RetryableError)
        return isinstance(exc, (RetryableError, *self.retry_on))

    def delay(self, attempt: int, draw: float) -> float:
        """Seconds to wait before attempt ``attempt + 1``; ``draw`` in [0, 1) sets the jitter."""
        base = min(self.max_interval, self.initial_interval * self.backoff ** (attempt - 1))
        return max(0.0, base * (1 + self.jitter * (2 * draw - 1)))


NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``per_second`` calls a second of one tool, with bursts of up to ``burst``.

    A token bucket kept by the store (:meth:`~aetheris.store.port.Store.take_token`): on
    PostgreSQL one row per tool, so the limit holds across every worker of the database; on the
    memory and SQLite stores, within the process. A call over the limit waits its turn, before
    its intent is written; it is never refused.
    """

    per_second: float
    burst: float = 1.0

    def __post_init__(self) -> None:
        if not self.per_second > 0 or not self.burst >= 1:
            raise ConfigurationError(
                f"a rate limit needs per_second > 0 and burst >= 1, got {self.per_second}, "
                f"{self.burst}"
            )

    @classmethod
    def of(cls, value: RateLimit | float | None) -> RateLimit | None:
        """A limit from ``RateLimit``, a number of calls per second, or ``None``."""
        if value is None or isinstance(value, RateLimit):
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigurationError(f"rate_limit must be calls per second, got {value!r}")
        return cls(float(value))


@dataclass(frozen=True, slots=True)
class Committed:
    """``reconcile`` answer: the effect happened, with this result."""

    result: Any = None


@dataclass(frozen=True, slots=True)
class NotExecuted:
    """``reconcile`` answer: the effect did not happen; it may be dispatched once."""


Reconciliation = Committed | NotExecuted | None


@dataclass(frozen=True, slots=True)
class CompensationRequest:
    """What a ``compensate`` function receives: the committed call it must undo."""

    job_id: str
    tool: str
    position: int
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    result: Any
    idempotency_key: str


@dataclass(frozen=True)
class ToolDef:
    """A registered tool."""

    name: str
    fn: Callable[..., Any]
    effect: EffectClass
    retry: RetryPolicy
    reconcile: Callable[[str], Reconciliation | Awaitable[Reconciliation]] | None = None
    compensate: Callable[[CompensationRequest], Any] | None = None
    requires_approval: bool = False
    approval_timeout: float | None = None
    rate_limit: RateLimit | None = None
    schema: dict[str, Any] | None = None  # given (an MCP tool's); else derived from ``fn``
    secret: tuple[str, ...] = ()  # fields of its result and arguments never shown to people
    is_async: bool = field(init=False)
    adapter: TypeAdapter[Any] | None = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.fn))
        object.__setattr__(self, "adapter", return_adapter(self.fn))

    def revive(self, value: Any) -> Any:
        """Turn a recorded JSON result back into the annotated return type."""
        return revive(self.adapter, value)

    def input_schema(self) -> dict[str, Any] | None:
        """The JSON schema of the tool's arguments: the one given, else derived from the
        function's signature (``None`` where a parameter's type has no JSON schema)."""
        return self.schema if self.schema is not None else signature_schema(self.name, self.fn)

    def describe(self, source: str = "native") -> dict[str, Any]:
        """The tool's entry in the tool registry (``aetheris tools list``, ``GET /v1/tools``)."""
        retry = self.retry
        limit = self.rate_limit
        return {
            "name": self.name,
            "source": source,
            "effect": self.effect.value,
            "requires_approval": self.requires_approval,
            "retry": {
                "max_attempts": retry.max_attempts,
                "initial_interval": retry.initial_interval,
                "backoff": retry.backoff,
                "max_interval": retry.max_interval,
            },
            "rate_limit": None if limit is None else {"per_second": limit.per_second,
                                                      "burst": limit.burst},
            "reconcile": self.reconcile is not None,
            "compensate": self.compensate is not None,
            "input_schema": self.input_schema(),
        }  # fmt: skip


def signature_schema(name: str, fn: Callable[..., Any]) -> dict[str, Any] | None:
    """The JSON schema of ``fn``'s parameters, as an object of its named arguments."""
    try:
        signature = inspect.signature(fn)
        hints = type_hints(fn)
    except (TypeError, ValueError, ConfigurationError):
        return None
    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints.get(param.name, Any), default)
    try:
        model = create_model(f"{name}_arguments", **fields)
        schema: dict[str, Any] = model.model_json_schema()
    except (PydanticUserError, PydanticSchemaGenerationError, TypeError, ValueError):
        return None
    return schema


_adapters: weakref.WeakKeyDictionary[Callable[..., Any], TypeAdapter[Any] | None] = (
    weakref.WeakKeyDictionary()
)
# Functions defined at a module's or class's top level (no ``<locals>``, ``<lambda>`` in their
# name): a plain dict, three times faster to ask than the weak one, and they never go away.
_named_adapters: dict[Callable[..., Any], TypeAdapter[Any] | None] = {}
_UNKNOWN = object()


def return_adapter(fn: Callable[..., Any]) -> TypeAdapter[Any] | None:
    """A validator for ``fn``'s return annotation, so replay returns the live type.

    Cached per function: building a ``TypeAdapter`` costs more than a durable step. An
    annotation that cannot be resolved or validated is a :class:`ConfigurationError` here, at
    registration, not a replay that quietly returns other types than the live run did.
    """
    try:  # .get, not [] and KeyError: a closure's every call misses the first dict
        found = _named_adapters.get(fn, _UNKNOWN)
        if found is _UNKNOWN:
            found = _adapters.get(fn, _UNKNOWN)
    except TypeError:  # unhashable, or not weakly referenceable (a builtin)
        found = _UNKNOWN
    if found is not _UNKNOWN:
        return cast("TypeAdapter[Any] | None", found)
    adapter = _build_adapter(fn)
    if type(fn) is types.FunctionType and "<" not in fn.__qualname__:
        _named_adapters[fn] = adapter  # a function of a module or class lives as long as it
        return adapter
    with contextlib.suppress(TypeError):  # not weakly referenceable (a builtin): not cached
        _adapters[fn] = adapter
    return adapter


def _build_adapter(fn: Callable[..., Any]) -> TypeAdapter[Any] | None:
    annotation = type_hints(fn).get("return")
    if annotation is None or annotation is Any or annotation is type(None):
        return None
    if isinstance(annotation, type) and annotation in _SCALARS:
        return _SCALARS[annotation]
    try:
        return TypeAdapter(annotation)
    except PydanticSchemaGenerationError as exc:
        raise ConfigurationError(
            f"{_named(fn)}: its return annotation {annotation!r} cannot be validated: {exc}"
        ) from None


def type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """``fn``'s resolved annotations; one that names what does not exist is refused."""
    target = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else type(fn).__call__
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        return {}  # a builtin or a C function: no annotations to resolve
    try:
        return typing.get_type_hints(target)
    except Exception as exc:  # NameError, TypeError, ...: any unresolvable annotation
        raise ConfigurationError(
            f"{_named(fn)}: its annotations cannot be resolved ({type(exc).__name__}: {exc})"
        ) from None


def _named(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def revive(adapter: TypeAdapter[Any] | None, value: Any) -> Any:
    if adapter is None or type(value) is _EXACTLY.get(id(adapter)):
        return value  # what validating it would return: a replayed step's common case
    return adapter.validate_python(value)


# One adapter per scalar annotation; a value of exactly that type validates to itself.
_SCALARS: dict[Any, TypeAdapter[Any]] = {t: TypeAdapter(t) for t in (int, str, bool, float)}
_EXACTLY = {id(adapter): t for t, adapter in _SCALARS.items()}


def idempotency_key(job_id: str, position: int, args_hash: str) -> str:
    """Deterministic: the same call of the same job gets the same key on every worker."""
    return f"aeth-{job_id}-{position}-{args_hash[:16]}"


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a running tool may know about its call (see :func:`tool_context`)."""

    job_id: str
    tool: str
    position: int
    idempotency_key: str
    fencing_token: int
    attempt: int

    @property
    def traceparent(self) -> str | None:
        """The W3C trace context of this call when tracing is on (:mod:`aetheris.tracing`):
        send it downstream as the ``traceparent`` HTTP header, so that the service's spans
        join the job's trace. ``None`` when the call is not traced."""
        return observe.traceparent()


tool_context_var: ContextVar[ToolContext | None] = ContextVar("aetheris_tool_context", default=None)


def tool_context() -> ToolContext:
    """The call context of the tool that is running: forward ``idempotency_key`` downstream."""
    found = tool_context_var.get()
    if found is None:
        raise AetherisError("tool_context() is only available inside a tool called by an agent")
    return found
