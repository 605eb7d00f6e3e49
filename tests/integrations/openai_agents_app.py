"""An OpenAI Agents SDK shop assistant, for tests that run it in worker processes.

``OA_WORLD`` names a folder where the model appends a line per real call (``model.log``) and
the ``charge`` and ``refund`` tools a line per real dispatch. The model is scripted by the
conversation's state (how many tool outputs it has seen), not by a counter, so a second
worker process answers the turns it is asked exactly as the first would have.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from agents import Agent, RunConfig, function_tool, set_tracing_disabled
from agents.items import ModelResponse, TResponseOutputItem
from agents.models.interface import Model, ModelProvider
from agents.testing import assistant_message, function_call
from agents.usage import Usage

from aetheris import App, Context
from aetheris.integrations.openai_agents import run_agent

set_tracing_disabled(True)  # nothing leaves the machine (workers also get the env variable)
app = App(lease_ttl=float(os.environ.get("OA_LEASE_TTL", "30")))
CHARGE = [
    [function_call("lookup", {"order_id": "o-1"}, call_id="c1")],
    [function_call("charge", {"order_id": "o-1", "amount": 42}, call_id="c2")],
    [assistant_message("Charged order o-1: ch-o-1.")],
]
REFUND = [
    [function_call("refund", {"order_id": "o-1", "amount": 42}, call_id="r1")],
    [assistant_message("Refund of order o-1 done.")],
]


def world() -> Path:
    return Path(os.environ.get("OA_WORLD", "."))


def outputs_seen(input: Any) -> int:
    """How many tool outputs the conversation holds so far."""
    items = input if isinstance(input, list) else []
    return sum(1 for item in items if _type(item) == "function_call_output")


def _type(item: Any) -> Any:
    return item.get("type") if isinstance(item, dict) else getattr(item, "type", None)


class TurnModel(Model):
    """Answers turn N of a script, N being the tool outputs seen; logs each real call."""

    def __init__(self, script: list[list[TResponseOutputItem]], log: Path | None = None) -> None:
        self.script = script
        self.log = log
        self.calls = 0

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        self.calls += 1
        if self.log is not None:
            with self.log.open("a") as log:
                log.write("call\n")
        turn = self.script[outputs_seen(args[1])]
        usage = Usage(requests=1, input_tokens=10, output_tokens=5, total_tokens=15)
        return ModelResponse(output=list(turn), usage=usage, response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the scripted model does not stream")


class ScriptProvider(ModelProvider):
    """Serves the model named ``scripted`` (the journal names each call after it)."""

    def __init__(self, script: list[list[TResponseOutputItem]], log: Path | None) -> None:
        self.model = TurnModel(script, log)

    def get_model(self, model_name: str | None) -> Model:
        assert model_name == "scripted", model_name
        return self.model


@function_tool
def lookup(order_id: str) -> dict[str, Any]:
    """Look an order up."""
    return {"order_id": order_id, "amount": 42}


@function_tool
def charge(order_id: str, amount: float) -> str:
    """Charge the customer for an order."""
    with (world() / "charges.log").open("a") as log:
        log.write(f"{order_id} {amount:g}\n")
    return f"ch-{order_id}"


@function_tool(needs_approval=True)
def refund(order_id: str, amount: float) -> str:
    """Refund an order (a human approves each refund)."""
    with (world() / "refunds.log").open("a") as log:
        log.write(f"{order_id} {amount:g}\n")
    return f"re-{order_id}"


@app.agent
async def shop(ctx: Context, request: str) -> str:
    agent = Agent(
        name="shop", instructions="You handle orders.", model="scripted", tools=[lookup, charge]
    )
    config = RunConfig(model_provider=ScriptProvider(CHARGE, world() / "model.log"))
    result = await run_agent(agent, request, effects={"lookup": "pure"}, run_config=config)
    return str(result.final_output)


@app.agent
async def refunds(ctx: Context, request: str) -> str:
    agent = Agent(
        name="refunds", instructions="You refund orders.", model="scripted", tools=[refund]
    )
    config = RunConfig(model_provider=ScriptProvider(REFUND, world() / "model.log"))
    result = await run_agent(agent, request, run_config=config)
    return str(result.final_output)
