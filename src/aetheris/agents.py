"""What an agent is: its function and the validator of its input, built at registration."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from aetheris.errors import ConfigurationError, InvalidInput
from aetheris.tools import return_adapter, type_hints

AgentFn = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class AgentDef:
    """A registered agent: its function, the validator of its input, its result's type."""

    name: str
    fn: AgentFn
    model: type[BaseModel] | None
    adapter: TypeAdapter[Any] | None

    @classmethod
    def of(cls, name: str, fn: AgentFn) -> AgentDef:
        """Check ``fn`` can be an agent and build its validators (or raise ConfigurationError)."""
        if not inspect.iscoroutinefunction(fn):
            raise ConfigurationError(f"agent {name!r} must be an async function")
        return cls(name, fn, _input_model(name, fn), return_adapter(fn))

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
