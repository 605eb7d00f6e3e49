"""API keys and signing keys on the in-memory store: the reference semantics of
:meth:`~aetheris.store.port.Store.create_api_key` and the rest of the keys' methods.

A mixin of :class:`~aetheris.store.memory.MemoryStore`, kept apart so that the store's module
stays about running jobs. Every method runs under the store's one lock.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

from aetheris.errors import Conflict
from aetheris.store.port import ApiKey, SigningKeyInfo


class MemoryTenancy:
    """Keys in dictionaries; the store provides ``_lock`` and ``_clock`` and calls
    :meth:`_init_tenancy`."""

    _lock: threading.Lock
    _clock: Callable[[], float]

    def _init_tenancy(self) -> None:
        self._keys: dict[str, ApiKey] = {}
        self._signing_keys: dict[str, SigningKeyInfo] = {}

    async def create_api_key(self, key: ApiKey) -> None:
        with self._lock:
            if key.id in self._keys:
                raise Conflict(f"API key {key.id!r} already exists")
            self._keys[key.id] = key

    async def api_key(self, key_id: str) -> ApiKey | None:
        return self._keys.get(key_id)

    async def api_keys(self) -> list[ApiKey]:
        return sorted(self._keys.values(), key=lambda k: (k.created_at, k.id))

    async def revoke_api_key(self, key_id: str) -> ApiKey | None:
        with self._lock:
            key = self._keys.get(key_id)
            if key is not None and key.revoked_at is None:
                key = self._keys[key_id] = dataclasses.replace(key, revoked_at=self._clock())
            return key

    async def record_signing_key(self, key_id: str, public_key: str) -> None:
        with self._lock:
            if key_id not in self._signing_keys:
                self._signing_keys[key_id] = SigningKeyInfo(key_id, public_key, self._clock())

    async def signing_keys(self) -> list[SigningKeyInfo]:
        with self._lock:
            found = list(self._signing_keys.values())
        return sorted(found, key=lambda k: (k.first_seen, k.key_id))
