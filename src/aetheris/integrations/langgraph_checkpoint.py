"""LangGraph checkpoints in an Aetheris store: :class:`AetherisCheckpointer`.

A ``BaseCheckpointSaver`` on the store of an :class:`~aetheris.App` (memory, SQLite or
PostgreSQL), in the store's key-value space (``kv_*`` on the store port). It passes the
``langgraph-checkpoint-conformance`` suite, base and extended capabilities (``put``,
``put_writes``, ``get_tuple``, ``list``, ``delete_thread``, ``delete_for_runs``,
``copy_thread``, ``prune``).

Layout, in the space ``langgraph`` (each component percent-encoded, so ``/`` never occurs in
one and a thread's or namespace's keys are one prefix):

* ``c/{thread}/{namespace}/{checkpoint id}``: the checkpoint with its channel values, its
  metadata and its parent's id. Checkpoint ids are uuid6 and sort by time, so the latest
  checkpoint of a namespace is the greatest key under its prefix.
* ``w/{thread}/{namespace}/{checkpoint id}/{task id}/{index}``: one pending write.

Values are serialized with LangGraph's own serde (``JsonPlusSerializer``: JSON and msgpack,
never pickle), typed as ``(type, bytes)``.

Choices and limits:

* Channel values are stored inline in each checkpoint (as LangGraph's SQLite saver does), not
  as per-version blobs (as its PostgreSQL saver does): a checkpoint is one key, deleted or
  copied exactly. A long message history is therefore stored once per checkpoint.
* ``list`` filters metadata in Python after reading a thread's checkpoints; ``list`` without a
  thread and ``delete_for_runs`` read every checkpoint of the store. Fine for threads of
  hundreds of checkpoints; prune old ones (``prune``) on long-lived threads.
* Writes of this checkpointer are not fenced by a job's lease: a zombie worker (one whose lease
  was taken over but which still runs) may add checkpoints to a thread until its next
  journaled operation is refused. The journal, which is what a job resumes from, is fenced.
* The sync methods (``get_tuple``, ``put``, ...; used by ``graph.invoke``) run the async ones on
  the event loop the checkpointer first used, from another thread; called on that loop's own
  thread they would deadlock and raise instead. A program with no event loop gets a private
  one on a background thread.
"""

from __future__ import annotations

import asyncio
import json
import struct
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar
from urllib.parse import quote, unquote

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    get_checkpoint_id,
    get_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from aetheris.app import App
from aetheris.errors import ConfigurationError
from aetheris.store.port import Store

T = TypeVar("T")
SPACE = "langgraph"
_HEADER = struct.Struct(">I")


def _part(text: str) -> str:
    return quote(text, safe="")


def _pack(header: dict[str, Any], *payloads: bytes) -> bytes:
    """A header (JSON, with the payloads' sizes) and the payloads, in one value."""
    head = json.dumps({**header, "sizes": [len(p) for p in payloads]}, sort_keys=True).encode()
    return b"".join([_HEADER.pack(len(head)), head, *payloads])


def _unpack(value: bytes) -> tuple[dict[str, Any], list[bytes]]:
    (size,) = _HEADER.unpack_from(value)
    header = json.loads(value[_HEADER.size : _HEADER.size + size])
    payloads, offset = [], _HEADER.size + size
    for length in header["sizes"]:
        payloads.append(value[offset : offset + length])
        offset += length
    return header, payloads


def _thread_config(thread_id: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    ids = {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}
    return {"configurable": ids}


class AetherisCheckpointer(BaseCheckpointSaver[str]):
    """LangGraph checkpoints kept in the store of ``app`` (or in ``store``).

    ``graph = builder.compile(checkpointer=AetherisCheckpointer(app))``. Inside an Aetheris
    agent, run the graph with :func:`aetheris.integrations.langgraph.run_graph`.
    """

    def __init__(
        self,
        app: App | None = None,
        *,
        store: Store | None = None,
        serde: SerializerProtocol | None = None,
        space: str = SPACE,
    ) -> None:
        super().__init__(serde=serde)
        if (app is None) == (store is None):
            raise ConfigurationError("AetherisCheckpointer needs an App or a store (one of them)")
        self.app = app
        self.space = space
        self._store = store
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: threading.Thread | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        where = self.app.database_url if self.app is not None else getattr(self._store, "url", "")
        return f"<AetherisCheckpointer {where}>"

    async def _kv(self) -> Store:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if self._store is None:
            assert self.app is not None
            self._store = await self.app.open_store()
        return self._store

    # -- reads -------------------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        store = await self._kv()
        conf = config["configurable"]
        thread_id, ns = str(conf["thread_id"]), str(conf.get("checkpoint_ns", ""))
        prefix = f"c/{_part(thread_id)}/{_part(ns)}/"
        if checkpoint_id := get_checkpoint_id(config):
            key = prefix + _part(checkpoint_id)
            found = await store.kv_get(self.space, [key])
            entries = [(key, found[key])] if key in found else []
        else:
            entries = await store.kv_scan(self.space, prefix, descending=True, limit=1)
        if not entries:
            return None
        return await self._tuple(store, *entries[0])

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        store = await self._kv()
        conf = config["configurable"] if config else {}
        prefix = "c/"
        if "thread_id" in conf:
            prefix += f"{_part(str(conf['thread_id']))}/"
            if conf.get("checkpoint_ns") is not None:
                prefix += f"{_part(str(conf['checkpoint_ns']))}/"
        wanted_id = conf.get("checkpoint_id")
        before_id = get_checkpoint_id(before) if before else None
        left = limit
        for key, value in await store.kv_scan(self.space, prefix, descending=True):
            checkpoint_id = unquote(key.rsplit("/", 1)[1])
            if wanted_id and checkpoint_id != wanted_id:
                continue
            if before_id and checkpoint_id >= before_id:
                continue
            if filter and not self._matches(value, filter):
                continue
            if left is not None:
                if left <= 0:
                    return
                left -= 1
            yield await self._tuple(store, key, value)

    def _matches(self, value: bytes, filter: dict[str, Any]) -> bool:
        header, (_, metadata) = _unpack(value)
        found = self.serde.loads_typed((header["metadata_type"], metadata))
        return all(found.get(k) == v for k, v in filter.items())

    async def _tuple(self, store: Store, key: str, value: bytes) -> CheckpointTuple:
        _, thread, ns, checkpoint_id = (unquote(p) for p in key.split("/"))
        header, (checkpoint, metadata) = _unpack(value)
        writes = await store.kv_scan(self.space, f"w/{key[2:]}/")
        pending = sorted((_unpack(v) for _, v in writes), key=lambda w: _write_order(w[0]))
        parent = header["parent"]
        return CheckpointTuple(
            config=_thread_config(thread, ns, checkpoint_id),
            checkpoint=self.serde.loads_typed((header["type"], checkpoint)),
            metadata=self.serde.loads_typed((header["metadata_type"], metadata)),
            parent_config=_thread_config(thread, ns, parent) if parent else None,
            pending_writes=[self._pending(h, p[0]) for h, p in pending],
        )

    def _pending(self, header: dict[str, Any], value: bytes) -> PendingWrite:
        return header["task_id"], header["channel"], self.serde.loads_typed((header["type"], value))

    # -- writes ------------------------------------------------------------------------------

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        store = await self._kv()
        conf = config["configurable"]
        thread_id, ns = str(conf["thread_id"]), str(conf.get("checkpoint_ns", ""))
        kind, body = self.serde.dumps_typed(checkpoint)
        meta_kind, meta = self.serde.dumps_typed(get_checkpoint_metadata(config, metadata))
        header = {"type": kind, "metadata_type": meta_kind, "parent": conf.get("checkpoint_id")}
        key = f"c/{_part(thread_id)}/{_part(ns)}/{_part(checkpoint['id'])}"
        await store.kv_put(self.space, {key: _pack(header, body, meta)})
        return _thread_config(thread_id, ns, checkpoint["id"])

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        store = await self._kv()
        conf = config["configurable"]
        thread_id, ns = str(conf["thread_id"]), str(conf.get("checkpoint_ns", ""))
        base = f"w/{_part(thread_id)}/{_part(ns)}/{_part(conf['checkpoint_id'])}/{_part(task_id)}"
        regular: dict[str, bytes] = {}
        special: dict[str, bytes] = {}
        for idx, (channel, value) in enumerate(writes):
            index = WRITES_IDX_MAP.get(channel, idx)
            kind, body = self.serde.dumps_typed(value)
            header = {
                "task_id": task_id,
                "task_path": task_path,
                "idx": index,
                "channel": channel,
                "type": kind,
            }
            # A task's regular writes are kept as first written; special ones (an error, an
            # interrupt, a resume value) are replaced, as LangGraph's own savers do.
            (special if index < 0 else regular)[f"{base}/{index}"] = _pack(header, body)
        if regular:
            await store.kv_put(self.space, regular, replace=False)
        if special:
            await store.kv_put(self.space, special)

    async def adelete_thread(self, thread_id: str) -> None:
        store = await self._kv()
        await store.kv_delete(self.space, prefix=f"c/{_part(thread_id)}/")
        await store.kv_delete(self.space, prefix=f"w/{_part(thread_id)}/")

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        if not run_ids:
            return
        store = await self._kv()
        runs = set(run_ids)
        for key, value in await store.kv_scan(self.space, "c/"):
            if self._matches_run(value, runs):
                await self._delete_checkpoint(store, key)

    def _matches_run(self, value: bytes, runs: set[str]) -> bool:
        header, (_, metadata) = _unpack(value)
        return self.serde.loads_typed((header["metadata_type"], metadata)).get("run_id") in runs

    async def _delete_checkpoint(self, store: Store, key: str) -> None:
        await store.kv_delete(self.space, [key], prefix=f"w/{key[2:]}/")

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        store = await self._kv()
        source, target = _part(source_thread_id), _part(target_thread_id)
        copied: dict[str, bytes] = {}
        for kind in ("c", "w"):
            for key, value in await store.kv_scan(self.space, f"{kind}/{source}/"):
                copied[f"{kind}/{target}/{key[len(kind) + len(source) + 2 :]}"] = value
        if copied:
            await store.kv_put(self.space, copied)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"unknown prune strategy {strategy!r}: use 'keep_latest' or 'delete'")
        store = await self._kv()
        for thread_id in thread_ids:
            if strategy == "delete":
                await self.adelete_thread(thread_id)
                continue
            kept: set[str] = set()
            prefix = f"c/{_part(thread_id)}/"
            for key, _ in await store.kv_scan(self.space, prefix, descending=True):
                namespace = key.rsplit("/", 1)[0]
                if namespace in kept:
                    await self._delete_checkpoint(store, key)
                kept.add(namespace)

    async def truncate_after(self, thread_id: str, checkpoint_id: str | None) -> None:
        """Delete the thread's checkpoints (in every namespace) newer than ``checkpoint_id``,
        and their writes; ``None``: all of them. What :func:`run_graph` uses to start each
        execution of a job from the state its thread had when the job began."""
        store = await self._kv()
        for key, _ in await store.kv_scan(self.space, f"c/{_part(thread_id)}/"):
            if checkpoint_id is None or unquote(key.rsplit("/", 1)[1]) > checkpoint_id:
                await self._delete_checkpoint(store, key)

    def close(self) -> None:
        """For programs that used only the sync methods: close the app's store on the
        checkpointer's private event loop and stop that loop. Nothing to do otherwise."""
        with self._lock:
            loop, thread, self._background = self._loop, self._background, None
        if thread is None or loop is None:
            return
        if self.app is not None:
            asyncio.run_coroutine_threadsafe(self.app.close(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
        self._loop = None

    # -- the sync twins ----------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._sync(lambda: self.aget_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        async def collect() -> list[CheckpointTuple]:
            listed = self.alist(config, filter=filter, before=before, limit=limit)
            return [item async for item in listed]

        yield from self._sync(collect)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._sync(lambda: self.aput(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._sync(lambda: self.aput_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._sync(lambda: self.adelete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._sync(lambda: self.adelete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._sync(lambda: self.acopy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._sync(lambda: self.aprune(thread_ids, strategy=strategy))

    def _sync(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` on the checkpointer's event loop from this (other) thread."""
        loop = self._loop_for_sync()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise ConfigurationError(
                "a sync method of AetherisCheckpointer was called on its event loop's thread "
                "(graph.invoke inside async code?): use the async API (ainvoke, astream)"
            )

        async def run() -> T:
            return await work()

        future: Future[T] = asyncio.run_coroutine_threadsafe(run(), loop)
        return future.result()

    def _loop_for_sync(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is not None and not self._loop.is_closed():
                return self._loop
            loop = asyncio.new_event_loop()
            self._background = threading.Thread(
                target=loop.run_forever, name="aetheris-checkpointer", daemon=True
            )
            self._background.start()
            self._loop = loop
            return loop


def _write_order(header: dict[str, Any]) -> tuple[str, str, int]:
    return writes_sort_key(header["task_path"], header["task_id"], header["idx"])
