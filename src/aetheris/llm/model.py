"""A chat model behind an OpenAI-compatible endpoint: hosted APIs, vLLM, Ollama, llama.cpp's
server, LM Studio. Inside an Aetheris agent each :meth:`ChatModel.chat` is a journaled model
call (kind ``llm``): a resumed or replayed job gets the recorded answer and pays nothing.

Configuration comes from arguments, else the environment: ``AETHERIS_LLM_URL`` (default
``https://api.openai.com/v1``), ``AETHERIS_LLM_API_KEY`` (else ``OPENAI_API_KEY``) and
``AETHERIS_LLM_MODEL``.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError, create_model

from aetheris.errors import ConfigurationError, ModelError, ToolFailed
from aetheris.ledger import Tool
from aetheris.llm.http import ChunkCallback, OpenAIEndpoint
from aetheris.modelcalls import ModelReply, Usage, model_call
from aetheris.tools import type_hints

DEFAULT_URL = "https://api.openai.com/v1"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool the model asked for: its call id, name and arguments (``None`` if they were not
    a JSON object: ``raw_arguments`` then holds what the model wrote)."""

    id: str
    name: str
    arguments: dict[str, Any] | None
    raw_arguments: str


@dataclass(frozen=True, slots=True)
class ChatResult:
    """A model's answer: its message (to append to the conversation as is), the text, the
    tool calls, why it stopped, usage and cost (``None``: unknown), and the raw response."""

    message: dict[str, Any]
    content: str | None
    tool_calls: list[ToolCall]
    finish_reason: str | None
    usage: Usage
    cost: float | None
    model: str | None
    raw: dict[str, Any]
    replayed: bool = False
    parsed: Any = field(default=None)


class ChatModel:
    """``await model.chat(messages, tools=..., response_format=...)``; extra keyword arguments
    (``temperature``, ``max_tokens``, ``seed``, ...) go to the endpoint with every request."""

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 4,
        endpoint: OpenAIEndpoint | None = None,
        **params: Any,
    ) -> None:
        name = model or os.environ.get("AETHERIS_LLM_MODEL")
        if not name:
            raise ConfigurationError("ChatModel needs a model name (or AETHERIS_LLM_MODEL)")
        self.model = name
        self.params = params
        self.endpoint = endpoint or OpenAIEndpoint(
            base_url or os.environ.get("AETHERIS_LLM_URL") or DEFAULT_URL,
            api_key or os.environ.get("AETHERIS_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY"),
            timeout=timeout,
            max_retries=max_retries,
        )

    def __repr__(self) -> str:
        return f"<ChatModel {self.model} at {self.endpoint.shown_url}>"

    async def aclose(self) -> None:
        await self.endpoint.aclose()

    async def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Tool[Any, Any] | Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        response_format: type[BaseModel] | Mapping[str, Any] | None = None,
        stream: bool = False,
        on_chunk: ChunkCallback | None = None,
        **params: Any,
    ) -> ChatResult:
        """Ask the model; with ``stream=True`` chunks reach ``on_chunk`` as they come and only
        the whole answer is journaled (a replayed answer reaches ``on_chunk`` as one chunk)."""
        body: dict[str, Any] = {"model": self.model, "messages": [dict(m) for m in messages]}
        body.update(self.params)
        body.update(params)
        if tools:
            body["tools"] = [tool_spec(t) for t in tools]
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
        schema_model = _schema_model(response_format)
        if response_format is not None:
            body["response_format"] = _response_format(response_format)

        async def call() -> ModelReply:
            if stream:
                response = await self.endpoint.stream(body, on_chunk)
            else:
                response = await self.endpoint.complete(body)
            return _reply(response)

        reply = await model_call(self.model, body, call, provider="openai-compatible")
        result = _result(reply)
        if stream and reply.replayed and on_chunk is not None:
            await _emit(on_chunk, _whole_chunk(result))
        if schema_model is not None:
            return _parsed(result, schema_model)
        return result

    async def run_tools(
        self, result: ChatResult, tools: Sequence[Tool[Any, Any]]
    ) -> list[dict[str, Any]]:
        """Run the tool calls of ``result`` with these Aetheris tools (each call journaled,
        with its effect class) and return the ``tool`` messages to send back. A failure, an
        unknown tool or arguments that are not JSON become the message the model reads."""
        by_name = {t.name: t for t in tools}
        messages = []
        for call in result.tool_calls:
            tool = by_name.get(call.name)
            if tool is None:
                content = f"error: no tool named {call.name!r} (tools: {', '.join(by_name)})"
            elif call.arguments is None:
                content = f"error: the arguments are not a JSON object: {call.raw_arguments!r}"
            else:
                try:
                    value = await tool(**call.arguments)
                    # Keys sorted: a replayed result comes back from canonical JSON, and the
                    # message must be the same bytes as live for the request to match.
                    content = json.dumps(_plain(value), ensure_ascii=False, sort_keys=True)
                except ToolFailed as exc:
                    content = f"error: {exc.error_type}: {exc.message}"
            messages.append({"role": "tool", "tool_call_id": call.id, "content": content})
        return messages


def tool_spec(tool: Tool[Any, Any] | Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAI ``tools`` entry of an Aetheris tool (its parameters' JSON schema and its
    docstring), or a dict given as is."""
    if not isinstance(tool, Tool):
        return dict(tool)
    fn = tool.definition.fn
    hints = type_hints(fn)
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints.get(param.name, Any), default)
    schema = create_model(f"{tool.name}_args", **fields).model_json_schema()
    schema.pop("title", None)
    doc = inspect.getdoc(fn) or ""
    function = {"name": tool.name, "description": doc.split("\n\n")[0], "parameters": schema}
    return {"type": "function", "function": function}


def _schema_model(response_format: Any) -> type[BaseModel] | None:
    if isinstance(response_format, type) and issubclass(response_format, BaseModel):
        return response_format
    return None


def _response_format(response_format: type[BaseModel] | Mapping[str, Any]) -> dict[str, Any]:
    model = _schema_model(response_format)
    if model is None:
        return dict(response_format)  # type: ignore[arg-type]
    schema = {"name": model.__name__, "schema": model.model_json_schema(), "strict": True}
    return {"type": "json_schema", "json_schema": schema}


def _reply(response: dict[str, Any]) -> ModelReply:
    """The journaled form of a chat completion: the response, its usage, who answered."""
    usage = response.get("usage") or {}
    counted = Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
    return ModelReply(response, counted, response.get("model"))


def _result(reply: ModelReply) -> ChatResult:
    response = reply.response
    try:
        choice = response["choices"][0]
        message = dict(choice["message"])
    except (KeyError, IndexError, TypeError) as exc:
        raise ModelError(f"the model's response has no message: {exc!r}") from None
    message.setdefault("role", "assistant")
    calls = [_tool_call(c) for c in message.get("tool_calls") or ()]
    return ChatResult(
        message=message,
        content=message.get("content"),
        tool_calls=calls,
        finish_reason=choice.get("finish_reason"),
        usage=reply.usage or Usage(),
        cost=reply.cost,
        model=reply.model,
        raw=response,
        replayed=reply.replayed,
    )


def _tool_call(call: Mapping[str, Any]) -> ToolCall:
    function = call.get("function") or {}
    raw = function.get("arguments") or "{}"
    try:
        arguments = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        arguments = None
    if not isinstance(arguments, dict):
        arguments = None
    return ToolCall(str(call.get("id", "")), str(function.get("name", "")), arguments, str(raw))


def _parsed(result: ChatResult, model: type[BaseModel]) -> ChatResult:
    try:
        parsed = model.model_validate_json(result.content or "")
    except ValidationError as exc:
        raise ModelError(
            f"the model's answer is not a valid {model.__name__}: {exc.errors()[0]['msg']} "
            f"(answer: {(result.content or '')[:200]!r})"
        ) from None
    fields = {name: getattr(result, name) for name in ChatResult.__slots__ if name != "parsed"}
    return ChatResult(**fields, parsed=parsed)


def _whole_chunk(result: ChatResult) -> dict[str, Any]:
    """A replayed answer as one streaming chunk, for subscribers that render chunks."""
    delta = {k: v for k, v in result.message.items() if k in ("role", "content", "tool_calls")}
    choice = {"index": 0, "delta": delta, "finish_reason": result.finish_reason}
    return {"object": "chat.completion.chunk", "choices": [choice], "replayed": True}


async def _emit(on_chunk: ChunkCallback, chunk: dict[str, Any]) -> None:
    outcome = on_chunk(chunk)
    if inspect.isawaitable(outcome):
        await outcome


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if callable(dump) else value
