"""Model calls: :class:`ChatModel` for OpenAI-compatible endpoints (hosted APIs, vLLM, Ollama,
llama.cpp's server, LM Studio), journaled inside an agent; its transport
(``aetheris.llm.http``); prices and budgets.

``aetheris.llm.stub`` is a scripted OpenAI-compatible server for tests; it is not imported here.
"""

from __future__ import annotations

from aetheris.errors import ModelCallFailed, ModelError
from aetheris.llm.http import OpenAIEndpoint
from aetheris.llm.model import ChatModel, ChatResult, ToolCall, tool_spec
from aetheris.modelcalls import ModelReply, Usage, model_call
from aetheris.models import Budget
from aetheris.pricing import Price, price_of, set_price

__all__ = [
    "Budget",
    "ChatModel",
    "ChatResult",
    "ModelCallFailed",
    "ModelError",
    "ModelReply",
    "OpenAIEndpoint",
    "Price",
    "ToolCall",
    "Usage",
    "model_call",
    "price_of",
    "set_price",
    "tool_spec",
]
