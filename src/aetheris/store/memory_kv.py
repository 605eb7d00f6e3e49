"""The key-value space on the in-memory store: the reference semantics of
:meth:`~aetheris.store.port.Store.kv_put` and its siblings (integrations' state, such as
LangGraph checkpoints), in one dictionary per space.

A mixin of :class:`~aetheris.store.memory.MemoryStore`, kept apart so that the store's module
stays about running jobs. Every method runs under the store's one lock.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from aetheris.store._shared import key_range


class MemoryKeyValue:
    """``kv_*`` in dictionaries; the store provides ``_lock`` and sets ``_kv`` up."""

    _lock: threading.Lock
    _kv: dict[str, dict[str, bytes]]

    async def kv_put(self, space: str, items: Mapping[str, bytes], *, replace: bool = True) -> None:
        with self._lock:
            entries = self._kv.setdefault(space, {})
            for key, value in items.items():
                if replace or key not in entries:
                    entries[key] = bytes(value)

    async def kv_get(self, space: str, keys: Sequence[str]) -> dict[str, bytes]:
        with self._lock:
            entries = self._kv.get(space, {})
            return {k: entries[k] for k in keys if k in entries}

    async def kv_scan(
        self,
        space: str,
        prefix: str = "",
        *,
        below: str | None = None,
        descending: bool = False,
        limit: int | None = None,
    ) -> list[tuple[str, bytes]]:
        low, high = key_range(prefix, below)
        with self._lock:
            found = [(k, v) for k, v in self._kv.get(space, {}).items() if low <= k < high]
        found.sort(reverse=descending)
        return found if limit is None else found[:limit]

    async def kv_delete(
        self, space: str, keys: Sequence[str] = (), *, prefix: str | None = None
    ) -> None:
        with self._lock:
            entries = self._kv.get(space, {})
            gone = set(keys)
            if prefix is not None:
                low, high = key_range(prefix)
                gone.update(k for k in entries if low <= k < high)
            for key in gone:
                entries.pop(key, None)
