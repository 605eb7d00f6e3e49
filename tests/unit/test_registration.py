"""Registration refuses what cannot work, at once: never a validation quietly turned off."""

from __future__ import annotations

import pytest

from aetheris import App, Context
from aetheris.errors import ConfigurationError


def test_an_agent_whose_annotation_names_nothing_is_refused() -> None:
    app = App("memory://")

    async def agent(ctx: Context, order: NoSuchType) -> None:  # type: ignore[name-defined]  # noqa: F821
        return None

    with pytest.raises(ConfigurationError, match="annotations cannot be resolved"):
        app.agent(agent)


def test_a_tool_whose_return_annotation_names_nothing_is_refused() -> None:
    app = App("memory://")

    async def lookup(order_id: str) -> NoSuchType:  # type: ignore[name-defined]  # noqa: F821
        raise AssertionError("never called")

    with pytest.raises(ConfigurationError, match="annotations cannot be resolved"):
        app.tool(lookup)


class Opaque:
    """A type pydantic has no schema for."""


def test_a_tool_whose_return_type_cannot_be_validated_is_refused() -> None:
    app = App("memory://")

    async def lookup(order_id: str) -> Opaque:
        return Opaque()

    with pytest.raises(ConfigurationError, match="cannot be validated"):
        app.tool(lookup)


def test_an_agent_that_is_not_async_or_takes_no_context_is_refused() -> None:
    app = App("memory://")

    def sync_agent(ctx: Context) -> None:
        return None

    async def no_context() -> None:
        return None

    with pytest.raises(ConfigurationError, match="must be an async function"):
        app.agent(sync_agent)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="Context as its first argument"):
        app.agent(no_context)
