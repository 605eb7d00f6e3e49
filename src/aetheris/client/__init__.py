"""The Python client of an Aetheris server: :class:`Client` (async) and :class:`SyncClient`.

Both take the server's URL and an API key (``aetheris keys create``), default to
``AETHERIS_URL`` and ``AETHERIS_API_KEY``, and answer with the models and errors of
:class:`~aetheris.App`. This package knows the API only as JSON over HTTP: it imports nothing
of the server (:mod:`aetheris.api`), which it may run far away from.
"""

from __future__ import annotations

from aetheris.client.decode import AgentInfo, PendingApproval
from aetheris.client.remote import Client, RemoteJobHandle
from aetheris.client.sync import SyncClient, SyncJobHandle

__all__ = [
    "AgentInfo",
    "Client",
    "PendingApproval",
    "RemoteJobHandle",
    "SyncClient",
    "SyncJobHandle",
]
