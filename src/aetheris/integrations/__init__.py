"""Agents written with other frameworks, run by Aetheris: each framework's model calls and
tool calls go through the journal and the effects ledger, through the framework's own public
extension points. One module per framework, each with its optional extra:

* ``aetheris.integrations.pydantic_ai`` (``pip install 'aetheris[pydantic-ai]'``)
* ``aetheris.integrations.langgraph`` (``pip install 'aetheris[langgraph]'``)
* ``aetheris.integrations.openai_agents`` (``pip install 'aetheris[openai-agents]'``)
* ``aetheris.integrations.adk`` (``pip install 'aetheris[adk]'``)

Nothing here is imported by the runtime; importing a module needs its framework installed.
"""
