"""The input check a client without the agents' code makes, from the JSON schema a worker
registered: it names what is missing or unknown, and never refuses what the worker accepts."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from aetheris import App, Context
from aetheris.agents import AgentDef, check_input
from aetheris.errors import InvalidInput


class Line(BaseModel):
    sku: str
    quantity: int = 1


app = App("memory://")


@app.agent
async def place(
    ctx: Context,
    order_id: str,
    lines: list[Line],
    note: Line | None = None,
    when: dt.datetime | None = None,
    rush: bool = False,
) -> None:
    return None


@app.agent
async def loose(ctx: Context, order_id: str, **extra: Any) -> None:
    return None


class Opaque:
    """A parameter type JSON schema cannot describe."""


@app.agent
async def opaque(ctx: Context, thing: Opaque) -> None:
    return None


def refusal(agent: AgentDef, data: dict[str, Any]) -> str | None:
    schema = agent.input_schema()
    assert schema is not None
    try:
        check_input(agent.name, schema, data)
    except InvalidInput as exc:
        return str(exc)
    return None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"lines": []}, "order_id: required, missing"),
        ({"order_id": "o", "lines": [], "colour": 1}, "colour: unknown field (expected "),
        ({"order_id": "o", "lines": "abc"}, "lines: expected a list, got str"),
        ({"order_id": "o", "lines": [{"quantity": 2}]}, "lines[0].sku: required, missing"),
        ({"order_id": "o", "lines": [7]}, "lines[0]: expected an object, got int"),
    ],
)
def test_what_is_surely_wrong_is_named(data: dict[str, Any], message: str) -> None:
    found = refusal(app.agents["place"], data)
    assert found is not None and message in found, found


def test_scalars_and_optional_branches_are_left_to_the_worker() -> None:
    data = {"order_id": "o", "lines": [{"sku": "s", "quantity": "2"}], "when": 1, "rush": "yes"}
    assert refusal(app.agents["place"], data) is None
    assert app.agents["place"].validate(data)["lines"][0].quantity == 2


def test_extra_fields_pass_where_the_agent_takes_them() -> None:
    assert refusal(app.agents["loose"], {"order_id": "o", "anything": 1}) is None


def test_a_type_json_schema_cannot_describe_registers_no_schema() -> None:
    assert app.agents["opaque"].input_schema() is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["sku", "quantity", "x"]), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["order_id", "lines", "note", "when", "rush", "colour"]),
        json_values,
        max_size=6,
    )
)
def test_the_check_never_refuses_what_the_worker_accepts(data: dict[str, Any]) -> None:
    agent = app.agents["place"]
    if refusal(agent, data) is not None:
        with pytest.raises(InvalidInput):
            agent.validate(data)
