"""LangGraph and LangChain agents run by Aetheris (``pip install 'aetheris[langgraph]'``).

Four pieces, each usable alone:

* :class:`AetherisChatModel` wraps any LangChain chat model: inside an Aetheris agent each call
  is a journaled model call (kind ``llm``). A resumed or replayed job gets the recorded answer
  and the model is not called again.
* :class:`DurableTools` journals tool calls, each with an effect class by tool name (default
  ``at_most_once``): pass it to ``ToolNode(tools, awrap_tool_call=DurableTools(...))``.
  :class:`AetherisMiddleware` does both for ``langchain.agents.create_agent``.
* :class:`~aetheris.integrations.langgraph_checkpoint.AetherisCheckpointer` keeps LangGraph
  checkpoints in the Aetheris store.
* :func:`run_graph` runs a compiled graph inside an agent; a LangGraph ``interrupt()`` parks the
  job until ``aetheris signal JOB resume --data JSON``, and the graph resumes with that payload.

How a job resumes. An agent is re-executed from the top on every resume (after a crash, after
a park); so is the graph. Each execution starts the graph from the state its thread had when
the job began (the thread's checkpoints added by earlier executions are deleted first) and every
model and tool call the journal holds is answered from it, in order: recorded turns cost
nothing, and a tool whose outcome is recorded is not dispatched again. The journal, not the
checkpoints, is what a job resumes from; the thread then holds the graph's state as an
uninterrupted run would have left it.

Calls inside a node are journaled one by one. LangGraph runs a node again from its top when it
resumes after ``interrupt()`` (and when a node retry policy retries it): the calls that node
already made, with the same arguments in the same order, get their recorded results (keyed by
LangGraph's task id and the call's rank in the node), so the side effects before an
``interrupt()`` happen once. A call that failed is made again on a retry.

Determinism. A model request is hashed and compared on replay: messages are encoded as
LangChain's dicts with sorted keys and without their ``id`` (LangGraph gives each message a
random id). A model's answer and a tool's ``ToolMessage`` are rebuilt from their journaled JSON
live and on replay alike, so both runs see the same objects.

Guarantees and limits:

* An ``at_most_once`` tool is dispatched at most once per job; a crash during its call leaves it
  in doubt for an operator (``aetheris effects``), never re-run on a guess.
* A model call whose record had not landed when the worker died is made again (and may be paid
  twice); a recorded one is never made again.
* Tool calls a ``ToolNode`` runs concurrently (several calls in one message) take journal
  positions in the order they start, which is the message's order unless a wrapper or callback
  before the journal awaits real I/O.
* A tool that returns a ``Command`` cannot be journaled (its call fails with a message saying
  so); a tool result must have a JSON form (its ``content`` and ``artifact``).
* Streaming: a journaled call returns the whole answer at once (``stream_mode="messages"`` gets
  one chunk per answer), live and on replay.
* ``with_structured_output`` of the wrapper uses tool calling (LangChain's generic method), not
  a provider's native JSON mode.
* Checkpoint writes are not fenced by the job's lease (see
  :mod:`aetheris.integrations.langgraph_checkpoint`); a replay (``aetheris replay``) runs the
  graph on an in-memory checkpointer and writes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ToolMessage,
    message_to_dict,
    messages_from_dict,
)
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.runtime import get_runtime
from langgraph.types import Command
from pydantic import BaseModel, ConfigDict

from aetheris.context import Context
from aetheris.errors import ConfigurationError
from aetheris.integrations.langgraph_checkpoint import AetherisCheckpointer
from aetheris.journal import canonical, sha256_hex
from aetheris.ledger import journaled_call
from aetheris.modelcalls import ModelReply, Usage, model_call
from aetheris.run import current_run
from aetheris.store.port import EffectClass
from aetheris.tools import RetryPolicy

__all__ = [
    "AetherisChatModel",
    "AetherisCheckpointer",
    "AetherisMiddleware",
    "DurableTools",
    "node_call",
    "run_graph",
]

_MEMO = "langgraph"


# -- JSON forms --------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """``value`` as plain JSON, deterministically: pydantic models and schemas by their JSON,
    anything else unknown by its type's name (never a ``repr`` with an address in it)."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [plain(v) for v in value]
        return sorted(items, key=canonical) if isinstance(value, set | frozenset) else items
    if isinstance(value, BaseModel):
        return plain(value.model_dump(mode="json"))
    if isinstance(value, type) and issubclass(value, BaseModel):
        return plain(value.model_json_schema())
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


def message_json(message: BaseMessage, *, with_id: bool = True) -> dict[str, Any]:
    """A LangChain message as JSON (LangChain's own dict form); ``with_id=False`` drops the
    message id, which LangGraph draws at random."""
    data: dict[str, Any] = plain(message_to_dict(message))
    if not with_id:
        data["data"].pop("id", None)
    return data


def message_from_json(data: Mapping[str, Any]) -> BaseMessage:
    return messages_from_dict([dict(data)])[0]


# -- calls inside a node: the same call again after interrupt() is answered once --------------


async def _once(kind: str, name: str, digest: str, call: Callable[[], Awaitable[Any]]) -> Any:
    """``call()`` (a journaled call), unless this node's task made the same call at the same
    rank in an earlier execution of its body (before an ``interrupt()``, or a retried attempt):
    then its result, without a journal position."""
    slot = _node_slot()
    if slot is None:
        return await call()
    memo, key, marker = slot
    done = memo["done"].get(key)
    if done is not None and done[0] != marker and done[1] == (kind, name, digest):
        return done[2]
    value = await call()
    memo["done"][key] = (marker, (kind, name, digest), value)
    return value


def _node_slot() -> tuple[dict[str, Any], tuple[str, str, int], int] | None:
    """(the run's memo, the call's key: task id and rank, the node execution's marker)."""
    run = current_run.get()
    if run is None:
        return None
    try:
        runtime = get_runtime()
    except RuntimeError:  # not inside a graph
        return None
    info = getattr(runtime, "execution_info", None)
    if info is None:
        return None
    memo = run.memo.setdefault(_MEMO, {"ranks": {}, "done": {}})
    # LangGraph makes a Runtime per execution of a task's body (each attempt, each re-run
    # after an interrupt): its identity marks the execution. Kept alive so ids are not reused.
    marker = id(runtime)
    held, rank = memo["ranks"].get(marker, (runtime, 0))
    memo["ranks"][marker] = (held, rank + 1)
    return memo, (info.checkpoint_ns, info.task_id, rank), marker


# -- the model ---------------------------------------------------------------------------------


class AetherisChatModel(BaseChatModel):
    """A LangChain chat model whose calls are journaled model calls inside Aetheris agents.

    ``AetherisChatModel(ChatOpenAI(...))``; ``name`` (default: the inner model's name) is the
    call's name in the journal, the ``NAME`` of ``AETHERIS_CRASH_AT=after_outcome:NAME``.
    Outside an agent it simply delegates.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: BaseChatModel
    journal_name: str | None = None

    def __init__(self, inner: BaseChatModel, *, name: str | None = None, **kwargs: Any) -> None:
        fields: dict[str, Any] = {"inner": inner, "journal_name": name, **kwargs}
        super().__init__(**fields)

    @property
    def _llm_type(self) -> str:
        return f"aetheris:{self.inner._llm_type}"

    @property
    def model_name_in_journal(self) -> str:
        if self.journal_name:
            return self.journal_name
        for attribute in ("model_name", "model", "model_id"):
            value = getattr(self.inner, attribute, None)
            if isinstance(value, str) and value:
                return value
        return self.inner._llm_type

    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """The inner model's ``bind_tools`` (its provider's tool format), bound to this wrapper
        so the calls stay journaled."""
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        bound = self.inner.bind_tools(tools, **kwargs)
        if bound is self.inner:
            return self
        if isinstance(bound, RunnableBinding) and bound.bound is self.inner:
            return self.bind(**bound.kwargs)
        raise ConfigurationError(
            f"{type(self.inner).__name__}.bind_tools returned {type(bound).__name__}, not a "
            "binding of the model: AetherisChatModel cannot keep its calls journaled"
        )

    def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
        raise ConfigurationError(
            "AetherisChatModel is async only (its calls are journaled): use ainvoke/astream, "
            "or graph.ainvoke"
        )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        name = self.model_name_in_journal
        request: dict[str, Any] = {"messages": [message_json(m, with_id=False) for m in messages]}
        request.update(plain({"stop": stop, **kwargs}))

        async def call() -> ModelReply:
            result = await self.inner._agenerate(messages, stop=stop, **kwargs)
            return _reply(result, name)

        async def journaled() -> Any:
            reply = await model_call(name, request, call, provider=self.inner._llm_type)
            return reply.response

        digest = sha256_hex(canonical(request))
        return _chat_result(await _once("llm", name, digest, journaled))


def _reply(result: ChatResult, model: str) -> ModelReply:
    generations = []
    input_tokens = output_tokens = 0
    for generation in result.generations:
        message = generation.message
        usage = getattr(message, "usage_metadata", None) or {}
        input_tokens += int(usage.get("input_tokens") or 0)
        output_tokens += int(usage.get("output_tokens") or 0)
        info = plain(generation.generation_info) if generation.generation_info else None
        generations.append({"message": message_json(message), "info": info})
    response = {"generations": generations, "llm_output": plain(result.llm_output)}
    return ModelReply(response, Usage(input_tokens, output_tokens), model)


def _chat_result(response: Mapping[str, Any]) -> ChatResult:
    generations = [
        ChatGeneration(message=message_from_json(g["message"]), generation_info=g.get("info"))
        for g in response["generations"]
    ]
    return ChatResult(generations=generations, llm_output=response.get("llm_output"))


# -- tools -------------------------------------------------------------------------------------


class DurableTools:
    """Journals each tool call a ``ToolNode`` makes (``ToolNode(tools, awrap_tool_call=
    DurableTools(...))``): ``effects`` gives a tool's effect class by name, ``default``
    (``at_most_once``) the others'; ``approvals`` names tools that need a human's approval of
    the exact arguments before each dispatch (``aetheris approve JOB``).

    Inside the tool, ``aetheris.tool_context().idempotency_key`` is the call's stable key.
    """

    def __init__(
        self,
        effects: Mapping[str, EffectClass | str] | None = None,
        *,
        default: EffectClass | str = EffectClass.AT_MOST_ONCE,
        approvals: Sequence[str] = (),
    ) -> None:
        self.effects = {name: EffectClass(effect) for name, effect in (effects or {}).items()}
        self.default = EffectClass(default)
        self.approvals = frozenset(approvals)

    def effect_of(self, tool: str) -> EffectClass:
        return self.effects.get(tool, self.default)

    async def __call__(
        self,
        request: ToolCallRequest,
        execute: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage:
        call = request.tool_call
        name, args = call["name"], plain(call.get("args") or {})

        async def dispatch(**_: Any) -> dict[str, Any]:
            return _tool_json(name, await execute(request))

        async def journaled() -> Any:
            return await journaled_call(
                name,
                dispatch,
                args,
                effect=self.effect_of(name),
                requires_approval=name in self.approvals,
            )

        digest = sha256_hex(canonical(args))
        result = await _once("tool", name, digest, journaled)
        return _tool_message(result, call.get("id") or "", name)


def _tool_json(name: str, outcome: ToolMessage | Command[Any]) -> dict[str, Any]:
    if not isinstance(outcome, ToolMessage):
        raise TypeError(
            f"tool {name!r} returned a {type(outcome).__name__}; a journaled tool must return "
            "content (a ToolMessage), not a Command"
        )
    return {
        "content": plain(outcome.content),
        "status": outcome.status,
        "artifact": plain(outcome.artifact),
    }


def _tool_message(result: Mapping[str, Any], call_id: str, name: str) -> ToolMessage:
    return ToolMessage(
        content=result["content"],
        tool_call_id=call_id,
        name=name,
        status=result.get("status", "success"),
        artifact=result.get("artifact"),
    )


async def node_call(
    name: str,
    fn: Callable[..., Any],
    kwargs: Mapping[str, Any] | None = None,
    *,
    effect: EffectClass | str = EffectClass.AT_MOST_ONCE,
    retry: RetryPolicy | None = None,
    reconcile: Callable[[str], Any] | None = None,
    requires_approval: bool = False,
) -> Any:
    """:func:`aetheris.journaled_call` for code inside a graph node: ``fn(**kwargs)`` journaled
    with its effect class, and answered from the first execution when LangGraph runs the node
    again (after an ``interrupt()``). A replayed result is its JSON form."""
    arguments = dict(kwargs or {})

    async def journaled() -> Any:
        return await journaled_call(
            name,
            fn,
            arguments,
            effect=effect,
            retry=retry,
            reconcile=reconcile,
            requires_approval=requires_approval,
        )

    digest = sha256_hex(canonical(plain(arguments)))
    return await _once("tool", name, digest, journaled)


class AetherisMiddleware(AgentMiddleware[Any, Any]):
    """``create_agent(model, tools, middleware=[AetherisMiddleware(...)])``: every model call
    of the agent goes through :class:`AetherisChatModel` and every tool call through
    :class:`DurableTools` (same arguments)."""

    def __init__(
        self,
        effects: Mapping[str, EffectClass | str] | None = None,
        *,
        default: EffectClass | str = EffectClass.AT_MOST_ONCE,
        approvals: Sequence[str] = (),
        model_name: str | None = None,
    ) -> None:
        super().__init__()
        self.tools_wrapper = DurableTools(effects, default=default, approvals=approvals)
        self.model_name = model_name
        self._wrapped: dict[int, tuple[BaseChatModel, AetherisChatModel]] = {}

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResponse[Any]:
        return await handler(request.override(model=self._durable(request.model)))

    def _durable(self, model: BaseChatModel) -> BaseChatModel:
        if isinstance(model, AetherisChatModel):
            return model
        held = self._wrapped.get(id(model))
        if held is None or held[0] is not model:
            held = (model, AetherisChatModel(model, name=self.model_name))
            self._wrapped[id(model)] = held
        return held[1]

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage:
        return await self.tools_wrapper(request, handler)


# -- running a graph inside an agent -----------------------------------------------------------


async def run_graph(
    ctx: Context,
    graph: Any,
    input: Any,
    config: RunnableConfig | None = None,
    *,
    signal: str = "resume",
) -> Any:
    """Run a compiled LangGraph ``graph`` inside an Aetheris agent and return its output.

    The graph's thread is ``config``'s ``thread_id`` (default ``aetheris-<job id>``). When the
    graph stops on ``interrupt(value)``, ``value`` is journaled (``langgraph.interrupt``) and
    the job parks until a signal named ``signal`` arrives (``aetheris signal JOB resume --data
    JSON`` or ``app.signal(job_id, "resume", payload)``); the graph then resumes with
    ``Command(resume=payload)`` (several pending interrupts take one signal each, in order).
    """
    configurable = dict((config or {}).get("configurable") or {})
    configurable.setdefault("thread_id", f"aetheris-{ctx.job_id}")
    configurable.pop("checkpoint_id", None)
    config = {**(config or {}), "configurable": configurable}
    saver = getattr(graph, "checkpointer", None)
    if not isinstance(saver, BaseCheckpointSaver):
        saver = None  # no checkpointer (or a subgraph's True/False): no interrupts either
    if saver is not None:
        graph = await _from_the_start(ctx, graph, saver, str(configurable["thread_id"]))
    output = await graph.ainvoke(input, config, durability="sync")
    while saver is not None and (interrupts := (await graph.aget_state(config)).interrupts):
        resume: dict[str, Any] = {}
        for pending in interrupts:
            await ctx.step("langgraph.interrupt", plain, pending.value)
            resume[pending.id] = await ctx.wait_for_signal(signal)
        only = len(resume) == 1
        command: Command[Any] = Command(resume=next(iter(resume.values())) if only else resume)
        output = await graph.ainvoke(command, config, durability="sync")
    return output


async def _from_the_start(ctx: Context, graph: Any, saver: Any, thread_id: str) -> Any:
    """The graph, its thread as it was when the job began: the checkpoint the job started
    from is journaled; this execution deletes the checkpoints earlier ones added after it. A
    replay gets a copy of the graph on an in-memory checkpointer holding that checkpoint."""

    async def latest(thread: str) -> str | None:
        ids = {"thread_id": thread, "checkpoint_ns": ""}
        found = await saver.aget_tuple({"configurable": ids})
        return None if found is None else str(found.checkpoint["id"])

    base: str | None = await ctx.step("langgraph.thread", latest, thread_id)
    run = current_run.get()
    if run is not None and run.replay_only:
        memory = InMemorySaver()
        if base is not None:
            await _seed(memory, saver, thread_id, base)
        return graph.copy(update={"checkpointer": memory})
    if isinstance(saver, AetherisCheckpointer):
        await saver.truncate_after(thread_id, base)
    elif base is None:
        await saver.adelete_thread(thread_id)
    else:
        raise ConfigurationError(
            f"thread {thread_id!r} had checkpoints when the job began: run it on "
            "AetherisCheckpointer, which can set the thread back to them on a resume"
        )
    return graph


async def _seed(memory: InMemorySaver, saver: Any, thread_id: str, checkpoint_id: str) -> None:
    ids = {"thread_id": thread_id, "checkpoint_ns": ""}
    config: RunnableConfig = {"configurable": ids}
    found = await saver.aget_tuple({"configurable": {**ids, "checkpoint_id": checkpoint_id}})
    if found is None:
        raise ConfigurationError(
            f"checkpoint {checkpoint_id} of thread {thread_id!r}, where the job began, is gone: "
            "the graph cannot be replayed"
        )
    if found.parent_config is not None:
        config = found.parent_config
    versions = dict(found.checkpoint["channel_versions"])
    await memory.aput(config, found.checkpoint, found.metadata, versions)
