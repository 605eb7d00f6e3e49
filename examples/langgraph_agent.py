"""A LangGraph agent run by Aetheris, runnable offline: ``python examples/langgraph_agent.py``.

A model node and a tool node (the classic tool loop) with its checkpoints in the Aetheris store;
each model call and each tool call is a journal entry, and ``charge`` is ``at_most_once``. The
script starts one job, serves it with a worker in this process, and prints its trace.

Offline (the default) the model is scripted. With ``AETHERIS_LLM_URL`` set (an
OpenAI-compatible endpoint; ``AETHERIS_LLM_MODEL``, ``AETHERIS_LLM_API_KEY``), it asks that
model through ``aetheris.llm.ChatModel``, whose calls are journaled by the client itself.
"""

import asyncio
import json
import os
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, convert_to_openai_messages
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from pydantic import Field

from aetheris import App, Context
from aetheris.cli import render, trace_view
from aetheris.integrations.langgraph import (
    AetherisChatModel,
    AetherisCheckpointer,
    DurableTools,
    run_graph,
)
from aetheris.llm import ChatModel

app = App()  # AETHERIS_DATABASE_URL, else sqlite:///.aetheris/aetheris.db


@tool
async def lookup(order_id: str) -> dict[str, Any]:
    """Look an order up."""
    return {"order_id": order_id, "amount": 42}


@tool
async def charge(order_id: str, amount: float) -> str:
    """Charge the customer for an order."""
    return f"ch-{order_id}"  # e.g. payments.charge(..., idempotency_key=tool_context()...)


class Scripted(GenericFakeChatModel):
    """Answers turn N of a conversation with reply N (and takes any tools)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        replies = [
            AIMessage("", tool_calls=[{"name": "lookup", "args": {"order_id": "o-1"}, "id": "1"}]),
            AIMessage(
                "",
                tool_calls=[
                    {"name": "charge", "args": {"order_id": "o-1", "amount": 42}, "id": "2"}
                ],
            ),
            AIMessage("Charged order o-1 (42): ch-o-1."),
        ]
        self.messages = iter([replies[sum(isinstance(m, AIMessage) for m in messages)]])
        return super()._generate(messages, *args, **kwargs)


class Endpoint(BaseChatModel):
    """A LangChain chat model on ``aetheris.llm.ChatModel`` (journaled by the client)."""

    client: Any
    tools: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "aetheris-openai-compatible"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self.model_copy(update={"tools": [convert_to_openai_tool(t) for t in tools]})

    def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
        raise NotImplementedError("async only: use ainvoke")

    async def _agenerate(self, messages: list[BaseMessage], *a: Any, **k: Any) -> ChatResult:
        sent = convert_to_openai_messages(messages)
        reply = await self.client.chat(sent, tools=self.tools or None)
        calls = [{"name": c.name, "args": c.arguments or {}, "id": c.id} for c in reply.tool_calls]
        answer = AIMessage(reply.content or "", tool_calls=calls)
        return ChatResult(generations=[ChatGeneration(message=answer)])


def chat_model() -> BaseChatModel:
    if os.environ.get("AETHERIS_LLM_URL"):
        return Endpoint(client=ChatModel(temperature=0))
    return AetherisChatModel(Scripted(messages=iter(())), name="scripted")


def order_graph() -> Any:
    model = chat_model().bind_tools([lookup, charge])

    async def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node(
        "tools", ToolNode([lookup, charge], awrap_tool_call=DurableTools({"lookup": "pure"}))
    )
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=AetherisCheckpointer(app))


graph = order_graph()


@app.agent
async def shop_assistant(ctx: Context, request: str) -> str:
    output = await run_graph(ctx, graph, {"messages": [HumanMessage(request)]})
    return str(output["messages"][-1].content)


async def main() -> None:
    handle = await app.start("shop_assistant", {"request": "Charge order o-1, please."})
    worker = app.worker(concurrency=4)
    serving = asyncio.create_task(worker.run())
    try:
        print(f"job {handle.job_id} on {app.database_url}:")
        print(json.dumps(await handle.result(timeout=60)))
    finally:
        worker.stop()
        await serving
    store = await app.open_store()
    job = await store.get_job(handle.job_id)
    assert job is not None
    render.console().print(trace_view.trace_table(job, await store.events(handle.job_id)))
    await app.close()


if __name__ == "__main__":
    asyncio.run(main())
