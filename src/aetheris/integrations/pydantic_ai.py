"""PydanticAI agents run by Aetheris: ``Agent(..., capabilities=[AetherisDurability(...)])``.

Inside a running Aetheris agent, ``await agent.run(...)`` then journals

* each model request, as a journal entry of kind ``llm`` (through
  :func:`aetheris.modelcalls.model_call`: usage, cost and budgets apply, messages are stored once
  as blobs). A resumed or replayed run gets the recorded ``ModelResponse`` back and the model
  is not called again;
* each tool call (function tools included) as a journaled tool call under the effects ledger
  (:func:`aetheris.journaled_call`), with the effect class declared per tool
  (``AetherisDurability(tools={"charge": "at_most_once", "lookup": "pure"})``), else
  ``default_effect`` (``at_most_once``: a tool nobody classified is never re-run on a guess);
* each approval of a tool PydanticAI defers for one (``requires_approval=True``, or a tool
  raising ``ApprovalRequired``), as an Aetheris approval: the job parks, holding no worker,
  until ``aetheris approve`` (the tool then runs, on whichever worker resumes the job) or
  ``aetheris reject`` (the model gets PydanticAI's denial, with the reason).

Outside an Aetheris agent (and inside an Aetheris tool's body) the capability does nothing.

Why a plain capability and not ``BaseDurabilityCapability``: PydanticAI's durable base hands an
engine an opaque ``execute(body)`` per operation and journals discovery, validation and event
operations too. Aetheris needs more than that interface carries: the request's messages apart
from its parameters (messages are content-addressed blobs, the request hash detects a diverging
replay), the response's token usage (budgets and cost), a per-tool effect class and approvals
bound to a call's arguments. Three public hooks give exactly that: ``get_wrapper_model`` wraps the
model that serves each attempt (so every capability's request hooks still run, live and on
replay, and only the model's I/O is replaced), ``wrap_tool_execute`` journals a tool's
execution, and ``handle_deferred_tool_calls`` answers approvals. ``wrap_run`` makes tool calls
sequential inside Aetheris (journal positions follow the model's order of calls, never the
order in which concurrent calls happen to finish), and ``get_default_run_id`` derives the run id
from the job, so a resumed run has the run id it had.

What is and is not guaranteed:

* A tool's effect class decides what a crash during its call means (``pure`` re-runs,
  ``idempotent`` re-runs with the same ``aetheris.tool_context().idempotency_key``,
  ``at_most_once`` parks ``effect_in_doubt``). A tool name the model invents is answered by
  PydanticAI with a retry prompt; nothing is dispatched or journaled for it.
* Requests are hashed without their timestamps, run ids and conversation ids (which differ
  between runs); any other difference, such as a tool added to the agent, is a divergence: the
  job parks with reason ``nondeterminism``.
* Tool results are journaled in their JSON form and the same form is returned live and on
  replay: a tool returning a pydantic model hands PydanticAI a dict. A ``ToolReturn`` is rebuilt.
* A tool's ``ModelRetry`` and PydanticAI ``ToolFailed`` reach PydanticAI as such, live and on
  replay; any other exception is recorded and raised as :class:`aetheris.ToolFailed`.
* A failed model request is raised as :class:`aetheris.ModelCallFailed`, live and on replay, not
  as the provider's exception: a ``FallbackModel`` falls back inside the journaled call, but a
  ``ModelFallback`` capability that selects on exception types does not see them.
* Streamed requests (``run_stream``, an ``event_stream_handler``) are journaled as their final
  response: the stream is drained inside the journaled call and its events are synthesised from
  that response afterwards, so a consumer sees them at the end of each request, not as tokens
  arrive.
* Tool discovery (an MCP server's tool list) is not journaled: it runs again on every resume, and
  a list that changed shows up as a divergence at the next model request.
* A tool's ``ModelRetry``, ``CallDeferred`` or ``ApprovalRequired`` counts as an outcome of the
  call in the ledger: for an ``at_most_once`` tool, one dispatch.
* An approval is bound to the call it was asked for (tool, arguments, call id); it has no
  deadline. Calls deferred for external execution (``CallDeferred``) are not answered here: the
  run ends with PydanticAI's ``DeferredToolRequests``, as it would without Aetheris.
"""

from __future__ import annotations

import json
import uuid
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter
from pydantic_ai.capabilities import AbstractCapability, CapabilityOrdering
from pydantic_ai.durable_exec import conversation_id_from_run_id
from pydantic_ai.exceptions import (
    ApprovalRequired,
    CallDeferred,
    ModelRetry,
    ToolFailedError,
    ToolRetryError,
)
from pydantic_ai.exceptions import ToolFailed as FailedForTheModel
from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter, ModelResponse, ToolReturn
from pydantic_ai.models import (
    CompletedStreamedResponse,
    Model,
    ModelRequestParameters,
    StreamedResponse,
)
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tool_manager import ToolManager
from pydantic_ai.tools import (
    DeferredToolApprovalResult,
    DeferredToolRequests,
    DeferredToolResults,
    RunContext,
    ToolApproved,
    ToolDenied,
)
from pydantic_core import to_jsonable_python

from aetheris.context import Context
from aetheris.errors import ApprovalRejected, ConfigurationError, ToolFailed
from aetheris.ledger import journaled_call
from aetheris.modelcalls import ModelReply, Usage, model_call
from aetheris.run import JobRun, current_run
from aetheris.store.port import EffectClass
from aetheris.tools import RetryPolicy

__all__ = ["AetherisDurability", "ToolDeferred", "ToolPolicy"]

_RUN_IDS = uuid.UUID("6f1c2d0e-5b7a-4c3e-9a51-1d2b3c4d5e6f")  # namespace of derived run ids
_VOLATILE = frozenset({"timestamp", "run_id", "conversation_id"})  # differ between runs
_TOOL_RETURN = "$pydantic_ai.ToolReturn"
_RESPONSE: TypeAdapter[ModelResponse] = TypeAdapter(ModelResponse)
_PARAMETERS: TypeAdapter[ModelRequestParameters] = TypeAdapter(ModelRequestParameters)
_TOOL_RETURNS: TypeAdapter[ToolReturn[Any]] = TypeAdapter(ToolReturn[Any])
_runs_started: weakref.WeakKeyDictionary[JobRun, int] = weakref.WeakKeyDictionary()


class ToolDeferred(Exception):
    """A tool deferred its call (PydanticAI's ``CallDeferred`` or ``ApprovalRequired``), as the
    journal records it: the message is the JSON of the deferral's kind and metadata."""

    def __init__(self, kind: str, metadata: dict[str, Any] | None) -> None:
        body = {"kind": kind, "metadata": metadata}
        super().__init__(json.dumps(to_jsonable_python(body), sort_keys=True))


@dataclass(frozen=True, slots=True)
class ToolPolicy:
    """How one PydanticAI tool is journaled: its effect class, the retry policy of failures
    before any effect, and a ``reconcile(idempotency_key)`` for an ``at_most_once`` call a crash
    left in doubt (see :func:`aetheris.journaled_call`)."""

    effect: EffectClass | str = EffectClass.AT_MOST_ONCE
    retry: RetryPolicy | None = None
    reconcile: Callable[[str], Any] | None = None

    def __post_init__(self) -> None:
        try:
            EffectClass(self.effect)
        except ValueError:
            known = ", ".join(repr(e.value) for e in EffectClass)
            raise ConfigurationError(
                f"unknown effect class {self.effect!r}; one of {known}"
            ) from None


# Failures that are messages to the model or deferrals, not transient: never retried here.
_NOT_TRANSIENT = (ModelRetry, FailedForTheModel, ToolDeferred)


class AetherisDurability(AbstractCapability[Any]):
    """A PydanticAI capability that journals the agent's model requests, tool calls and tool
    approvals when the agent runs inside an Aetheris agent; outside one it does nothing.

    ``tools`` maps a tool's name to its effect class (``"pure"``, ``"idempotent"``,
    ``"at_most_once"``) or a :class:`ToolPolicy`; a tool not named there gets ``default_effect``.
    """

    def __init__(
        self,
        *,
        tools: Mapping[str, EffectClass | str | ToolPolicy] | None = None,
        default_effect: EffectClass | str = EffectClass.AT_MOST_ONCE,
    ) -> None:
        self.default = ToolPolicy(default_effect)
        self.tools = {
            name: spec if isinstance(spec, ToolPolicy) else ToolPolicy(spec)
            for name, spec in (tools or {}).items()
        }

    def policy(self, tool: str) -> ToolPolicy:
        """The policy the calls of ``tool`` are journaled with."""
        return self.tools.get(tool, self.default)

    @classmethod
    def get_serialization_name(cls) -> str | None:
        return None  # built in code, with callables: not loadable from an agent spec

    def get_ordering(self) -> CapabilityOrdering:
        # Innermost, as PydanticAI's own durability capabilities: every other capability's
        # wrappers run outside the journaled call, live and on replay alike.
        return CapabilityOrdering(position="innermost")

    def get_default_run_id(self) -> str | None:
        run = current_run.get()
        if run is None:
            return None
        started = _runs_started.get(run, 0)
        _runs_started[run] = started + 1
        return str(uuid.uuid5(_RUN_IDS, f"{run.job.id}#{started}"))

    def get_default_conversation_id(self, run_id: str) -> str | None:
        return conversation_id_from_run_id(run_id) if current_run.get() is not None else None

    async def wrap_run(self, ctx: RunContext[Any], *, handler: Any) -> Any:
        if current_run.get() is None:
            return await handler()
        with ToolManager.parallel_execution_mode("sequential"):
            return await handler()

    def get_wrapper_model(self, model: Model) -> Model | None:
        return JournaledModel(model) if current_run.get() is not None else None

    async def wrap_tool_execute(
        self,
        ctx: RunContext[Any],
        *,
        call: Any,
        tool_def: Any,
        args: dict[str, Any],
        handler: Callable[[dict[str, Any]], Awaitable[Any]],
    ) -> Any:
        if current_run.get() is None:
            return await handler(args)
        policy = self.policy(call.tool_name)

        async def body() -> Any:
            return await _execute(handler, args)

        try:
            recorded = await journaled_call(
                call.tool_name,
                _ignoring_arguments(body),
                args,
                effect=policy.effect,
                retry=policy.retry or RetryPolicy(give_up_on=_NOT_TRANSIENT),
                reconcile=policy.reconcile,
            )
        except ToolFailed as failure:
            raise _for_pydantic_ai(failure) from None
        return _revive(recorded)

    async def handle_deferred_tool_calls(
        self, ctx: RunContext[Any], *, requests: DeferredToolRequests
    ) -> DeferredToolResults | None:
        run = current_run.get()
        if run is None or not requests.approvals:
            return None
        decisions: dict[str, bool | DeferredToolApprovalResult] = {}
        for call in requests.approvals:
            payload = {
                "tool": call.tool_name,
                "args": call.args_as_dict(),
                "tool_call_id": call.tool_call_id,
            }
            try:
                await Context(run).approval(f"tool:{call.tool_name}", payload)
            except ApprovalRejected as rejected:
                reason = (rejected.detail or {}).get("reason") or "rejected"
                decisions[call.tool_call_id] = ToolDenied(f"The tool call was rejected: {reason}")
            else:
                decisions[call.tool_call_id] = ToolApproved()
        return DeferredToolResults(approvals=decisions)


class JournaledModel(WrapperModel):
    """A model whose requests are journaled (kind ``llm``) inside a running Aetheris agent."""

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        if current_run.get() is None:
            return await self.wrapped.request(messages, model_settings, model_request_parameters)

        async def call() -> ModelReply:
            response = await self.wrapped.request(
                messages, model_settings, model_request_parameters
            )
            return _reply(response)

        document = request_document(messages, model_settings, model_request_parameters)
        reply = await model_call(self.model_name, document, call, provider=self.system)
        return _RESPONSE.validate_python(reply.response)

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncGenerator[StreamedResponse]:
        if current_run.get() is None:
            async with self.wrapped.request_stream(
                messages, model_settings, model_request_parameters, run_context
            ) as live:
                yield live
            return

        async def call() -> ModelReply:
            async with self.wrapped.request_stream(
                messages, model_settings, model_request_parameters, run_context
            ) as stream:
                async for _ in stream:
                    pass
                return _reply(stream.get())

        document = request_document(messages, model_settings, model_request_parameters)
        document["stream"] = True
        reply = await model_call(self.model_name, document, call, provider=self.system)
        response = _RESPONSE.validate_python(reply.response)
        yield CompletedStreamedResponse(
            response, model_request_parameters=model_request_parameters, replay_events=True
        )


def request_document(
    messages: list[ModelMessage],
    model_settings: ModelSettings | None,
    parameters: ModelRequestParameters,
) -> dict[str, Any]:
    """A model request as plain JSON that is the same on every run of the same code: the
    messages without their timestamps, run ids and conversation ids, the settings and the
    request parameters (tools, output mode, instructions)."""
    return {
        "messages": [
            _stable(m) for m in ModelMessagesTypeAdapter.dump_python(messages, mode="json")
        ],
        "settings": to_jsonable_python(model_settings or {}, fallback=_opaque),
        "parameters": _PARAMETERS.dump_python(parameters, mode="json"),
    }


def _stable(message: dict[str, Any]) -> dict[str, Any]:
    kept = {k: v for k, v in message.items() if k not in _VOLATILE}
    kept["parts"] = [
        {k: v for k, v in part.items() if k not in _VOLATILE} for part in message.get("parts", [])
    ]
    return kept


def _opaque(value: Any) -> str:
    # A setting with no JSON form (an httpx.Timeout, a client): its type, never a repr that
    # carries a memory address and would change the request's hash on every run.
    return f"<{type(value).__qualname__}>"


def _reply(response: ModelResponse) -> ModelReply:
    usage = Usage(response.usage.input_tokens, response.usage.output_tokens)
    document = in_key_order(_RESPONSE.dump_python(response, mode="json"))
    return ModelReply(document, usage, response.model_name)


def in_key_order(document: Any) -> Any:
    """``document`` with every object's keys sorted, as the journal gives it back: a live run
    then hands PydanticAI what a replay hands it, down to the order of a tool's arguments."""
    if isinstance(document, dict):
        return {key: in_key_order(document[key]) for key in sorted(document)}
    if isinstance(document, list):
        return [in_key_order(item) for item in document]
    return document


def _ignoring_arguments(body: Callable[[], Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """The tool body ``journaled_call`` runs: the arguments are journaled and hashed, but the
    call itself goes through PydanticAI's handler, which holds them already."""

    async def run(**_: Any) -> Any:
        return await body()

    return run


async def _execute(
    handler: Callable[[dict[str, Any]], Awaitable[Any]], args: dict[str, Any]
) -> Any:
    """Run the tool through PydanticAI; its result in JSON form, its control flow as the
    exceptions the journal records (and :func:`_for_pydantic_ai` turns back)."""
    try:
        result = await handler(args)
    except ToolRetryError as exc:
        asked = exc.__cause__
        message = asked.message if isinstance(asked, ModelRetry) else str(exc)
        raise ModelRetry(message) from exc
    except ToolFailedError as exc:
        raise FailedForTheModel(str(exc)) from exc
    except ApprovalRequired as exc:
        raise ToolDeferred("approval", exc.metadata) from exc
    except CallDeferred as exc:
        raise ToolDeferred(exc.kind, exc.metadata) from exc
    if isinstance(result, ToolReturn):
        return {_TOOL_RETURN: in_key_order(_TOOL_RETURNS.dump_python(result, mode="json"))}
    return in_key_order(to_jsonable_python(result))


def _for_pydantic_ai(failure: ToolFailed) -> Exception:
    """A recorded failure as PydanticAI expects it, the same live and on replay."""
    if failure.error_type == "ModelRetry":
        return ModelRetry(failure.message)
    if failure.error_type == FailedForTheModel.__name__:
        return FailedForTheModel(failure.message)
    if failure.error_type == ToolDeferred.__name__:
        deferral = json.loads(failure.message)
        if deferral["kind"] == "approval":
            return ApprovalRequired(deferral["metadata"])
        return CallDeferred(deferral["metadata"], kind=deferral["kind"])
    return failure


def _revive(recorded: Any) -> Any:
    if isinstance(recorded, dict) and set(recorded) == {_TOOL_RETURN}:
        return _TOOL_RETURNS.validate_python(recorded[_TOOL_RETURN])
    return recorded
