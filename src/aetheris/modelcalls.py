"""A model call as a journal entry (kind ``llm``): recorded once, never paid for twice.

Inside a running agent, :func:`model_call` takes the next journal position. A position that
holds a recorded call returns the recorded response: the model is not called again, so a
resumed or replayed job costs no tokens. Otherwise the job's budget is checked, the model is
called, and its response, token usage, cost and latency are journaled.

Conversations grow by a few messages a turn, and each request repeats all of them. Each
message is stored once, as a content-addressed blob of the job; a request records only the
head of a chain of nodes (``{"message": hash, "prev": node}``), so 200 turns store 200 turns'
messages, not 20,000. The hashes of a conversation's unchanged prefix are remembered by the
run (compared by equality, not encoded again), so hashing a turn costs only its new messages.

A model call is pure in the ledger's terms: if the worker dies before its record lands, the
call is made again. Providers do not deduplicate requests, so that one call may be paid twice;
every call whose record landed is paid once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aetheris import crashpoints, ledger, waits
from aetheris.errors import Draining, ModelCallFailed
from aetheris.journal import (
    Event,
    EventType,
    OpRecord,
    canonical,
    decode,
    sha256_hex,
    to_jsonable,
)
from aetheris.observe import Ended
from aetheris.pricing import cost_of
from aetheris.run import FOR_THE_AGENT, JobRun, Slot, current_run
from aetheris.store.encoded import CODEC

INLINE_LIMIT = 1024  # a request parameter or response over this many bytes goes to a blob
BLOB = "$blob"


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens a model call consumed, as the provider reported them."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class ModelReply:
    """A model's answer: the response (plain JSON, in the provider's shape), its usage, the
    model that answered, and its cost (``None``: unknown)."""

    response: Any
    usage: Usage | None = None
    model: str | None = None
    cost: float | None = None
    replayed: bool = False


async def model_call(
    model: str,
    request: Mapping[str, Any],
    call: Callable[[], Awaitable[ModelReply]],
    *,
    provider: str | None = None,
) -> ModelReply:
    """Journal one model request (``request["messages"]`` and its parameters) made by ``call``.

    Outside a running agent (or inside a tool), ``call`` simply runs.
    """
    run = current_run.get()
    if run is None:
        return await call()
    try:
        return await _journaled(run, model, request, call, provider)
    except FOR_THE_AGENT:
        raise
    except Exception as exc:
        raise run.runtime_failure(exc) from exc


async def _journaled(
    run: JobRun,
    model: str,
    request: Mapping[str, Any],
    call: Callable[[], Awaitable[ModelReply]],
    provider: str | None,
) -> ModelReply:
    while (why := run.spent.over(await run.limits())) is not None:
        await waits.budget_raised(run, why)
    blobs: list[tuple[str, bytes]] = []
    head, count = conversation(run.memo, request.get("messages") or (), blobs)
    params = _params(request, blobs)
    digest = sha256_hex(canonical({"messages": [head, count], "model": model, "params": params}))
    slot = run.next_op("llm", model, digest)
    if slot.replayed is not None:
        reply = await _replayed(run, slot.recorded(), slot.position)
    else:
        extra = {
            "provider": provider,
            "request": {"messages": {"head": head, "count": count}, "params": params},
        }
        reply = await _dispatch(run, slot, (model, digest), call, extra, blobs)
    ledger.last_answer.set(slot.position)  # the tool calls that follow are this answer's
    return reply


async def _dispatch(
    run: JobRun,
    slot: Slot,
    asked: tuple[str, str],
    call: Callable[[], Awaitable[ModelReply]],
    extra: dict[str, Any],
    blobs: list[tuple[str, bytes]],
) -> ModelReply:
    """Call the model (``asked``: its name and the request's hash), journal its answer (or
    failure) at ``slot``, and count what it spent."""
    model, digest = asked
    flight = run.take_off()
    try:
        if run.draining:
            raise Draining(f"the worker is stopping; the call of model {model!r} was not made")
        began, started_at = run.clock.monotonic(), run.clock.time()
        reply, error = await _call(run, slot.position, model, call)
        crashpoints.reach("after_dispatch", model)
        result = response = None
        if reply is not None:  # the response as the journal holds it, live as on replay
            result, response, extra = _outcome(run, model, reply, blobs, extra)
        record = OpRecord(
            kind="llm",
            name=model,
            ordinal=slot.ordinal,
            args_hash=digest,
            outcome="pure" if error is None else "permanent_failure",
            result=result,
            error=error,
            attempts=1,
            started_at=started_at,
            duration_ms=round((run.clock.monotonic() - began) * 1000, 3),
            extra=extra,
        )
        await run.commit(record.draft(slot.position), blobs=_unwritten(run.memo, blobs))
    finally:
        run.land(flight)
    crashpoints.reach("after_outcome", model)
    if reply is None:
        assert error is not None
        raise ModelCallFailed(model, error["type"], error["message"], position=slot.position)
    return _spend(run, record, response)


async def _call(
    run: JobRun, position: int, model: str, call: Callable[[], Awaitable[ModelReply]]
) -> tuple[ModelReply | None, dict[str, str] | None]:
    """Call the model, observed (:mod:`aetheris.probe`): its reply, or its failure's record."""
    live = run.probe.start(position, "llm", model)
    try:
        try:
            reply = await call()
        except Exception as exc:
            if live.observed:
                live.done(Ended("permanent_failure", type(exc).__name__))
            return None, {"type": type(exc).__name__, "message": str(exc)}
        if live.observed:
            live.done(_ended(model, reply))
        return reply, None
    finally:
        live.end()


def _ended(model: str, reply: ModelReply) -> Ended:
    usage = reply.usage or Usage()
    answered_by = reply.model or model
    cost = reply.cost if reply.cost is not None else cost_of(answered_by, *_tokens(usage))
    return Ended(
        "pure",
        model=answered_by,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost=cost,
    )


def _outcome(
    run: JobRun,
    model: str,
    reply: ModelReply,
    blobs: list[tuple[str, bytes]],
    extra: dict[str, Any],
) -> tuple[Any, Any, dict[str, Any]]:
    """The recorded result (the response, or a blob reference), the response in its JSON form,
    and what is recorded beside."""
    usage = reply.usage or Usage()
    answered_by = reply.model or model
    cost = reply.cost if reply.cost is not None else cost_of(answered_by, *_tokens(usage))
    response = run.encode_result(reply.response, f"model {model!r}")
    body = canonical(response)
    result: Any = response
    if len(body) > INLINE_LIMIT:
        digest = sha256_hex(body)
        blobs.append((digest, body))
        result = {BLOB: digest}
    usage_doc = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}
    extra = {**extra, "model": answered_by, "usage": usage_doc, "cost": cost}
    return result, response, extra


def _tokens(usage: Usage) -> tuple[int, int]:
    return usage.input_tokens, usage.output_tokens


def _spend(run: JobRun, record: OpRecord, response: Any, replayed: bool = False) -> ModelReply:
    """Count a call's usage against the job's budget; the reply agent code gets."""
    usage_doc = record.extra.get("usage") or {}
    usage = Usage(usage_doc.get("input_tokens", 0), usage_doc.get("output_tokens", 0))
    cost = record.extra.get("cost")
    run.spent.tokens += usage.total
    run.spent.calls += 1
    if cost is None:
        run.spent.cost_unknown = run.spent.cost_unknown or usage.total > 0
    else:
        run.spent.cost += cost
    return ModelReply(response, usage, record.extra.get("model"), cost, replayed)


async def _replayed(run: JobRun, record: OpRecord, position: int) -> ModelReply:
    """A recorded call: its response (read from its blob if it has one), never a new call."""
    if record.error is not None:
        error = record.error
        raise ModelCallFailed(record.name, error["type"], error["message"], position=position)
    response = record.result
    if isinstance(response, dict) and set(response) == {BLOB}:
        digest = response[BLOB]
        found = await run.read(run.store.blobs, run.job.id, [digest])
        if digest not in found:
            missing = f"blob {digest} of the response is not stored"
            raise ModelCallFailed(record.name, "MissingBlob", missing, position=position)
        response = decode(found[digest])
    return _spend(run, record, response, replayed=True)


# -- conversations and parameters as blobs --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    """A message of a conversation the run has hashed: a plain-JSON copy of it, its blob's
    hash and the hash of the chain node that ends with it."""

    snapshot: Any
    message: str
    node: str


def conversation(
    memo: dict[str, Any], messages: Sequence[Any], blobs: list[tuple[str, bytes]]
) -> tuple[str, int]:
    """The head of ``messages``' chain and their count; the blobs of messages and nodes not
    hashed before are added to ``blobs``. The longest prefix this run has hashed already (in
    any of its conversations) is reused after an equality check, without encoding it."""
    known: list[list[_Entry]] = memo.setdefault("conversations", [])
    best: list[_Entry] = []
    for entries in known:
        matched = _common(entries, messages)
        if matched > len(best):
            best = entries[:matched]
    chain = list(best)
    prev = chain[-1].node if chain else ""
    for message in messages[len(chain) :]:
        snapshot = to_jsonable(message)
        body = canonical(snapshot)
        digest = sha256_hex(body)
        node_body = canonical({"message": digest, "prev": prev})
        prev = sha256_hex(node_body)
        blobs += [(digest, body), (prev, node_body)]
        chain.append(_Entry(snapshot, digest, prev))
    if chain and len(chain) > len(best):
        known[:] = [*[e for e in known if not _extends(chain, e)][-7:], chain]
    return prev, len(messages)


def _common(entries: Sequence[_Entry], messages: Sequence[Any]) -> int:
    count = 0
    for entry, message in zip(entries, messages, strict=False):
        if message != entry.snapshot:
            break
        count += 1
    return count


def _extends(longer: Sequence[_Entry], shorter: Sequence[_Entry]) -> bool:
    return len(shorter) <= len(longer) and (not shorter or longer[len(shorter) - 1] is shorter[-1])


def _params(request: Mapping[str, Any], blobs: list[tuple[str, bytes]]) -> dict[str, Any]:
    """The request without its messages; a large value (a tool list) becomes a blob."""
    params: dict[str, Any] = {}
    for key, value in request.items():
        if key == "messages":
            continue
        plain = to_jsonable(value)
        body = canonical(plain)
        if len(body) > INLINE_LIMIT:
            digest = sha256_hex(body)
            blobs.append((digest, body))
            plain = {BLOB: digest}
        params[key] = plain
    return params


def _unwritten(memo: dict[str, Any], blobs: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The blobs this run has not written yet (a blob another run wrote is written again,
    and the store keeps one)."""
    written: set[str] = memo.setdefault("blobs_written", set())
    fresh = {digest: body for digest, body in blobs if digest not in written}
    written.update(fresh)
    return list(fresh.items())


# -- checking what the journal refers to -----------------------------------------------------


def check_blobs(events: Sequence[Event], blobs: Mapping[str, bytes]) -> tuple[int, str] | None:
    """The first model call (its event's seq and the problem) whose blobs are missing or do not
    match their hash: a message, a node of its conversation, a parameter, the response."""
    for digest, body in blobs.items():
        if sha256_hex(body) != digest and not sealed(body):
            return -1, f"blob {digest} does not match its bytes"
    for event in events:
        if event.type is not EventType.OP or event.data.get("kind") != "llm":
            continue
        problem = _missing(event.data, blobs)
        if problem is not None:
            return event.seq, problem
    return None


def _missing(data: Mapping[str, Any], blobs: Mapping[str, bytes]) -> str | None:
    request = data.get("request") or {}
    wanted = [v[BLOB] for v in (request.get("params") or {}).values() if _is_ref(v)]
    if _is_ref(data.get("result")):
        wanted.append(data["result"][BLOB])
    messages, problem = conversation_of(data, blobs)
    if problem is not None:
        return problem
    wanted += messages
    count = len(messages)
    expected = (request.get("messages") or {}).get("count", 0)
    head = blobs.get((request.get("messages") or {}).get("head", ""))
    if count != expected and not (head is not None and sealed(head)):
        return f"the conversation holds {count} messages, the call recorded {expected}"
    absent = [digest for digest in wanted if digest not in blobs]
    return f"blob {absent[0]} is missing" if absent else None


def conversation_of(
    data: Mapping[str, Any], blobs: Mapping[str, bytes]
) -> tuple[list[str], str | None]:
    """The hashes of the messages a recorded model call sent (its ``op`` event's ``data``),
    oldest first, read down its conversation's chain of nodes; and what is wrong, when a node
    is missing (then the messages after the gap only)."""
    node = ((data.get("request") or {}).get("messages") or {}).get("head", "")
    found: list[str] = []
    while node:
        if node not in blobs:
            return found[::-1], f"conversation node {node} is missing"
        if sealed(blobs[node]):  # encrypted: its links are read with its key only
            return found[::-1], None
        link = decode(blobs[node])
        found.append(link["message"])
        node = link["prev"]
    return found[::-1], None


def sealed(body: bytes) -> bool:
    """Whether a stored blob is encoded by a payload codec (see :mod:`aetheris.store.encoded`):
    its hash is of the plaintext, which only a reader with the key can check."""
    return body.startswith(b'{"' + CODEC.encode() + b'":')


def _is_ref(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {BLOB}
