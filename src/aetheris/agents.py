"""What an agent is: its function and the validator of its input, built at registration."""

from __future__ import annotations

import functools
import inspect
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    PydanticUserError,
    TypeAdapter,
    ValidationError,
    create_model,
)

from aetheris.clock import SYSTEM_CLOCK, Clock
from aetheris.errors import ConfigurationError, InvalidInput
from aetheris.fingerprint import fingerprint
from aetheris.journal import check_text
from aetheris.retention import Age, parse_age
from aetheris.tools import return_adapter, type_hints

AgentFn = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class AgentDef:
    """A registered agent: its function, the validator of its input, its result's type, and
    the version its author gave (``pinned``; else :attr:`version` is its code's fingerprint)."""

    name: str
    fn: AgentFn
    model: type[BaseModel] | None
    adapter: TypeAdapter[Any] | None
    secret: tuple[str, ...] = ()  # fields of its input and result never shown to people
    pinned: str | None = None
    retention: float | None = None  # seconds its ended jobs are kept (None: the App's)

    @classmethod
    def of(
        cls,
        name: str,
        fn: AgentFn,
        secret: tuple[str, ...] = (),
        version: str | None = None,
        retention: Age | None = None,
    ) -> AgentDef:
        """Check ``fn`` can be an agent and build its validators (or raise ConfigurationError)."""
        if not inspect.iscoroutinefunction(fn):
            raise ConfigurationError(f"agent {name!r} must be an async function")
        if version is not None:
            check_version(name, version)
        kept = None if retention is None else parse_age(retention, f"agent {name!r}'s retention")
        model, adapter = _input_model(name, fn), return_adapter(fn)
        return cls(name, fn, model, adapter, secret, version, kept)

    @functools.cached_property
    def version(self) -> str:
        """The code version every entry a run of this agent writes records: the one given at
        registration, else a fingerprint of the code (see :mod:`aetheris.fingerprint`).
        Computed at first use, once the agent's module has defined every helper it names."""
        return self.pinned if self.pinned is not None else fingerprint(self.fn)

    def input_schema(self) -> dict[str, Any] | None:
        """The JSON schema of the input, for clients without this code (``None``: any object,
        or a parameter type JSON schema cannot describe)."""
        if self.model is None:
            return None
        try:
            return self.model.model_json_schema()
        except PydanticUserError:  # an arbitrary type: only this code can check it
            return None

    def validate(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and coerce a job's input into the agent's keyword arguments."""
        if self.model is None:
            return dict(data)
        try:
            parsed = self.model.model_validate(dict(data))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'input'}: {err['msg']}"
                for err in exc.errors()
            )
            raise InvalidInput(f"invalid input for agent {self.name!r}: {problems}") from None
        values = {name: getattr(parsed, name) for name in type(parsed).model_fields}
        values.update(parsed.model_extra or {})
        return values


def check_version(name: str, version: str) -> None:
    """Refuse a version no journal should carry: empty, over 64 characters, or with spaces or
    control characters (it is shown in traces and compared by workers as it is)."""
    if not isinstance(version, str) or not 0 < len(version) <= 64:
        raise ConfigurationError(
            f"agent {name!r}: version must be a string of 1 to 64 characters, got {version!r}"
        )
    if any(ch.isspace() or not ch.isprintable() for ch in version):
        raise ConfigurationError(
            f"agent {name!r}: version {version!r} has spaces or control characters"
        )


def _input_model(name: str, fn: AgentFn) -> type[BaseModel] | None:
    params = list(inspect.signature(fn).parameters.values())
    if not params or params[0].kind not in (
        params[0].POSITIONAL_ONLY,
        params[0].POSITIONAL_OR_KEYWORD,
    ):
        raise ConfigurationError(f"agent {name!r} must take the Context as its first argument")
    hints = type_hints(fn)
    fields: dict[str, Any] = {}
    extra: Literal["allow", "forbid"] = "forbid"
    for param in params[1:]:
        if param.kind is param.VAR_KEYWORD:
            extra = "allow"
            continue
        if param.kind in (param.VAR_POSITIONAL, param.POSITIONAL_ONLY):
            raise ConfigurationError(
                f"agent {name!r}: parameter {param.name!r} must be passable by keyword"
            )
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints.get(param.name, Any), default)
    if not fields and extra == "allow":
        return None
    config = ConfigDict(extra=extra, arbitrary_types_allowed=True)
    model: type[BaseModel] = create_model(f"{name}_input", __config__=config, **fields)
    return model


def check_input(name: str, schema: Mapping[str, Any], data: Mapping[str, Any]) -> None:
    """Refuse input that the worker serving agent ``name`` would surely refuse, judged by the
    JSON schema of its input that the worker registered; the worker still validates it fully.

    Sure means: a missing or unknown field, or a scalar where an object or a list belongs.
    Scalars' types are left to the worker, whose validator is lenient where JSON schema is
    not ("2" is an int to it, a number of seconds a datetime); so are ``anyOf`` branches.
    """
    problems = sorted(_sure_problems(schema, dict(data), schema, ""))
    if problems:
        raise InvalidInput(f"invalid input for agent {name!r}: {'; '.join(problems)}")


def _sure_problems(
    schema: Mapping[str, Any], value: Any, root: Mapping[str, Any], where: str
) -> Iterator[str]:
    while isinstance(schema.get("$ref"), str) and schema["$ref"].startswith("#/$defs/"):
        schema = root.get("$defs", {}).get(schema["$ref"].removeprefix("#/$defs/"), {})
    kind = schema.get("type")
    if kind == "array":
        if not isinstance(value, list):
            yield f"{where or 'input'}: expected a list, got {type(value).__name__}"
        elif isinstance(schema.get("items"), Mapping):
            for i, item in enumerate(value):
                yield from _sure_problems(schema["items"], item, root, f"{where}[{i}]")
    if kind != "object":
        return
    if not isinstance(value, dict):
        yield f"{where or 'input'}: expected an object, got {type(value).__name__}"
        return
    fields = schema.get("properties", {})
    prefix = f"{where}." if where else ""
    for key in schema.get("required", ()):
        if key not in value:
            yield f"{prefix}{key}: required, missing"
    for key, item in value.items():
        if key in fields:
            yield from _sure_problems(fields[key], item, root, f"{prefix}{key}")
        elif schema.get("additionalProperties") is False:
            yield f"{prefix}{key}: unknown field (expected {', '.join(sorted(fields)) or 'none'})"


def check_texts(**texts: str | None) -> None:
    for what, text in texts.items():
        if text is not None:
            check_text(text, what.replace("_", " "))


def agent_name(agent: str | AgentFn) -> str:
    name = agent if isinstance(agent, str) else getattr(agent, "__aetheris_agent__", None)
    if name is None:
        raise ConfigurationError(f"{agent!r} is not a registered agent")
    return str(name)


def new_job_id(clock: Clock = SYSTEM_CLOCK) -> str:
    """A UUIDv7-style id: time-ordered, so listings and indexes follow creation order."""
    millis = int(clock.time() * 1000)
    rand = clock.getrandbits(80)
    value = (millis & ((1 << 48) - 1)) << 80 | (0x7 << 76) | (rand & ((1 << 76) - 1))
    value = (value & ~(0xC << 60)) | (0x8 << 60)
    return str(uuid.UUID(int=value))
