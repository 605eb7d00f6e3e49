"""Google ADK agents run by Aetheris: every model call is a journaled ``llm`` entry and every
tool call goes through the effects ledger (``pip install 'aetheris[adk]'``).

Inside an Aetheris agent::

    from aetheris.integrations.adk import final_text, run_agent

    @app.agent
    async def support(ctx: aetheris.Context, request: str) -> str:
        events = await run_agent(root_agent, request, effects={"lookup_order": "pure"})
        return final_text(events)

:func:`aetheris_agent` clones the agent tree (sub-agents included) so that

* each model is an :class:`AetherisLlm`, whose ``generate_content_async`` goes through
  :func:`aetheris.modelcalls.model_call`: the request (contents and config, as JSON) is hashed,
  the model's responses are journaled as JSON and rebuilt from it, live and on replay alike;
* each tool's ``run_async`` runs inside :func:`aetheris.journaled_call` with the effect named
  for it in ``effects`` (default ``at_most_once``); what the tool did to its
  ``tool_context.actions`` (state delta, transfer, escalation) is journaled with its result and
  applied again on replay;
* a tool that requires confirmation (``FunctionTool(require_confirmation=...)``) becomes a
  journaled call that ``requires_approval``: the job parks until ``aetheris approve JOB_ID``
  approves exactly that call, on any worker; a rejection answers the model with ADK's own
  ``{"error": "This tool call is rejected."}``.

:func:`run_agent` runs the clone on an ``InMemoryRunner`` with ADK's ids and randomness made
deterministic for the job (``google.adk.platform``: ids are derived from the job id and the
journal position, the random generator is seeded from them), so the ``adk-…`` function call
ids that reach the next model request are the same on every run. Time is left real: event
timestamps stay in ADK's session and reach neither a model request nor the journal.

Why not a plugin. A ``BasePlugin`` sees a model or tool call in two halves
(``before_*_callback``, then ``after_*_callback``); the ledger needs the dispatch inside one
journaled unit (intent, dispatch, outcome). A plugin could only get that by running the tool
itself inside ``before_tool_callback`` and returning its result, which would skip the agent's
own before-callbacks and ADK's confirmation gate. Wrapping ``BaseLlm.generate_content_async``
and ``BaseTool.run_async`` (as Temporal's ADK integration does) keeps every callback and the
gate where ADK puts them.

Guarantees: a model call whose record landed is never made again (resume and replay cost no
tokens); an ``at_most_once`` tool is dispatched at most once per job and call, across crashes
and workers (a crash between dispatch and record leaves it in doubt, never re-run); a replay of
an ended job runs no model and no tool.

Limits (not given, said here rather than pretended):

* A model call is pure in the ledger's terms: a worker that dies after the provider answered
  but before the record landed makes that call again.
* Streaming (``stream=True``) is journaled as the whole list of partial responses, which are
  all yielded once the call has ended; live connections (``connect``) are refused.
* Toolsets (MCP and others, resolved at run time) are refused: their calls would not be
  journaled. Artifacts and memory a tool writes through its context are not journaled.
* Callbacks (before/after model, tool and agent) run again on every resume: they must be
  deterministic and free of effects.
* Tool calls of one turn run concurrently, as ADK runs them; each takes its journal position
  when it starts, so a callback that awaits I/O before a tool starts can reorder them, which
  a replay reports as nondeterminism (never as a second dispatch).
* An agent used as a tool (``AgentTool``) is one journaled tool call; the session is an
  in-memory one rebuilt on each run, so persistent session services are not used.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import random
import uuid
from collections.abc import AsyncGenerator, Mapping
from typing import Any, TypeAlias

from google.adk.agents import BaseAgent, LlmAgent
from google.adk.events import Event, EventActions
from google.adk.models import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.models.registry import LLMRegistry
from google.adk.platform import _random as platform_random
from google.adk.platform import uuid as platform_uuid
from google.adk.runners import InMemoryRunner
from google.adk.tools.base_tool import BaseTool
from google.adk.tools.function_tool import FunctionTool
from google.adk.tools.tool_context import ToolContext
from google.genai import types
from pydantic import ConfigDict
from pydantic_core import to_jsonable_python

from aetheris.errors import ApprovalRejected, ConfigurationError
from aetheris.ledger import journaled_call
from aetheris.modelcalls import ModelReply, Usage, model_call
from aetheris.run import current_run
from aetheris.store.port import EffectClass

__all__ = [
    "AetherisLlm",
    "aetheris_agent",
    "deterministic_platform",
    "final_text",
    "journaled_tool",
    "run_agent",
]

PROVIDER = "google-adk"
REJECTED = {"error": "This tool call is rejected."}  # what ADK's confirmation gate answers
EffectName: TypeAlias = EffectClass | str
_IDS = uuid.UUID("5d4f3c1e-2b0a-4e8f-9a6b-7c1d2e3f4a5b")  # the namespace of derived ADK ids


# -- the model ---------------------------------------------------------------------------------


class AetherisLlm(BaseLlm):
    """A :class:`BaseLlm` whose calls are journaled model calls named ``journal_name`` (the
    ``NAME`` of ``AETHERIS_CRASH_AT=after_outcome:NAME``), served by ``inner``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    inner: BaseLlm
    journal_name: str

    def __init__(self, inner: BaseLlm | str, name: str | None = None) -> None:
        llm = LLMRegistry.new_llm(inner) if isinstance(inner, str) else inner
        if isinstance(llm, AetherisLlm):
            llm = llm.inner
        fields: dict[str, Any] = {"inner": llm, "journal_name": name or llm.model}
        super().__init__(model=llm.model, **fields)

    @property
    def capabilities(self) -> Any:
        return self.inner.capabilities

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        request = {
            "messages": [_json(content) for content in llm_request.contents],
            "model": llm_request.model,
            "config": _json(llm_request.config),
            "stream": stream,
        }

        async def call() -> ModelReply:
            responses = [r async for r in self.inner.generate_content_async(llm_request, stream)]
            return ModelReply({"responses": [_json(r) for r in responses]}, _usage(responses))

        reply = await model_call(self.journal_name, request, call, provider=PROVIDER)
        for doc in reply.response["responses"]:
            yield LlmResponse.model_validate(doc)

    def connect(self, llm_request: LlmRequest) -> Any:
        raise ConfigurationError(
            f"model {self.journal_name!r}: live connections are not journaled by Aetheris; "
            "run the agent with run_async"
        )


def _json(value: Any) -> Any:
    """A pydantic value of ADK or google-genai as plain JSON, without its unset fields; a
    value with no JSON form (a schema given as a class) is named, never ``repr``-ed."""
    if hasattr(value, "model_dump"):
        return to_jsonable_python(
            value.model_dump(exclude_none=True), fallback=_named, bytes_mode="base64"
        )
    return to_jsonable_python(value, fallback=_named, bytes_mode="base64")


def _named(value: Any) -> str:
    return getattr(value, "__qualname__", None) or type(value).__qualname__


def _usage(responses: list[LlmResponse]) -> Usage | None:
    for response in reversed(responses):
        meta = response.usage_metadata
        if meta is not None:
            return Usage(meta.prompt_token_count or 0, meta.candidates_token_count or 0)
    return None


# -- the tools ---------------------------------------------------------------------------------


def journaled_tool(tool: BaseTool, effect: EffectName = EffectClass.AT_MOST_ONCE) -> BaseTool:
    """A copy of ``tool`` whose ``run_async`` is a journaled call with ``effect``, and whose
    confirmation is an Aetheris approval of exactly that call."""
    declared = EffectClass(effect)
    clone = copy.copy(tool)
    if isinstance(clone, FunctionTool):
        clone._require_confirmation = False  # asked once, as an approval, below
    run = clone.run_async

    async def run_async(*, args: dict[str, Any], tool_context: ToolContext) -> Any:
        approve = await tool.check_require_confirmation(args, tool_context) is True

        async def dispatch(args: dict[str, Any]) -> dict[str, Any]:
            result = await run(args=copy.deepcopy(args), tool_context=tool_context)
            actions = tool_context.actions.model_dump(mode="json", exclude_defaults=True)
            done = {key: value for key, value in actions.items() if value not in (None, {}, [])}
            return {"result": _json(result), **({"actions": done} if done else {})}

        try:
            done = await journaled_call(
                tool.name, dispatch, {"args": args}, effect=declared, requires_approval=approve
            )
        except ApprovalRejected:
            return dict(REJECTED)
        _apply(tool_context.actions, done.get("actions", {}))
        return done["result"]

    async def never(args: dict[str, Any], tool_context: ToolContext) -> bool:
        return False  # the approval is part of the journaled call

    clone.run_async = run_async  # type: ignore[method-assign]
    clone.check_require_confirmation = never  # type: ignore[method-assign]
    return clone


def _apply(actions: EventActions, recorded: Mapping[str, Any]) -> None:
    """Set on ``actions`` what the tool set on them when it ran (the same live and replayed)."""
    done = EventActions.model_validate(recorded)
    for field in recorded:
        value = getattr(done, field)
        if field == "state_delta":
            actions.state_delta.update(value)  # the session's State writes through this dict
        else:
            setattr(actions, field, value)


# -- agents ------------------------------------------------------------------------------------


def aetheris_agent(
    agent: BaseAgent,
    effects: Mapping[str, EffectName] | None = None,
    *,
    default_effect: EffectName = EffectClass.AT_MOST_ONCE,
) -> BaseAgent:
    """A clone of ``agent`` and its sub-agents with journaled models and tools (``effects``:
    an effect per tool name, else ``default_effect``). The originals are left as they are."""
    effects = dict(effects or {})
    names: set[str] = set()
    clone = _clone(agent, effects, EffectClass(default_effect), names)
    unknown = sorted(set(effects) - names)
    if unknown:
        raise ConfigurationError(
            f"effects names tools that no agent under {agent.name!r} has: "
            f"{', '.join(unknown)} (tools: {', '.join(sorted(names)) or 'none'})"
        )
    return clone


def _clone(
    agent: BaseAgent, effects: Mapping[str, EffectName], default: EffectClass, names: set[str]
) -> BaseAgent:
    update: dict[str, Any] = {
        "sub_agents": [_clone(sub, effects, default, names) for sub in agent.sub_agents]
    }
    if isinstance(agent, LlmAgent):
        if agent.model:  # "" inherits the (wrapped) model of an ancestor
            update["model"] = AetherisLlm(agent.model)
        tools = [_tool(agent, tool) for tool in agent.tools]
        names.update(tool.name for tool in tools)
        update["tools"] = [journaled_tool(t, effects.get(t.name, default)) for t in tools]
    return agent.clone(update=update)


def _tool(agent: LlmAgent, tool: Any) -> BaseTool:
    if isinstance(tool, BaseTool):
        return tool
    if callable(tool):
        return FunctionTool(tool)
    raise ConfigurationError(
        f"agent {agent.name!r}: {type(tool).__name__} is a toolset, whose tools are found at "
        "run time; Aetheris cannot journal their calls: give the agent its tools one by one"
    )


def deterministic_platform() -> None:
    """Make ADK's ids and random numbers (``google.adk.platform``) in the current context
    derive from the running job and its journal position, so that every run of the job
    makes the same ones. Outside a running agent, nothing changes."""
    run = current_run.get()
    if run is None:
        return
    seed = f"{run.job.id}:{run.next_position}"
    counter = itertools.count()
    platform_uuid.set_id_provider(lambda: str(uuid.uuid5(_IDS, f"{seed}:{next(counter)}")))
    generator = random.Random(seed)
    platform_random.set_random_provider(lambda: generator)


async def run_agent(
    agent: BaseAgent,
    message: str | types.Content,
    *,
    effects: Mapping[str, EffectName] | None = None,
    default_effect: EffectName = EffectClass.AT_MOST_ONCE,
    user_id: str = "user",
    app_name: str = "aetheris",
    state: Mapping[str, Any] | None = None,
) -> list[Event]:
    """Run ``agent`` on ``message`` in a fresh in-memory session, with its model and tool
    calls journaled and ADK's ids deterministic (see the module docstring); the events."""
    durable = aetheris_agent(agent, effects, default_effect=default_effect)

    async def session() -> list[Event]:
        deterministic_platform()  # in this task's own context: nothing leaks to the caller
        runner = InMemoryRunner(agent=durable, app_name=app_name)
        try:
            opened = await runner.session_service.create_session(
                app_name=app_name, user_id=user_id, state=dict(state or {})
            )
            stream = runner.run_async(
                user_id=user_id, session_id=opened.id, new_message=_content(message)
            )
            return [event async for event in stream]
        finally:
            await runner.close()

    return await asyncio.create_task(session())


def _content(message: str | types.Content) -> types.Content:
    if isinstance(message, str):
        return types.Content(role="user", parts=[types.Part(text=message)])
    return message


def final_text(events: list[Event]) -> str:
    """The text of the last final response among ``events`` (empty if there is none)."""
    for event in reversed(events):
        if event.is_final_response() and event.content and event.content.parts:
            return "".join(part.text or "" for part in event.content.parts)
    return ""
