"""Model calls: the transport to OpenAI-compatible endpoints (``aetheris.llm.http``).

``aetheris.llm.stub`` is a scripted OpenAI-compatible server for tests; it is not imported here.
"""

from __future__ import annotations

from aetheris.errors import ModelError
from aetheris.llm.http import OpenAIEndpoint

__all__ = ["ModelError", "OpenAIEndpoint"]
