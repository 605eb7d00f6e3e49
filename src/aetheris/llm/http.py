"""The HTTP transport to OpenAI-compatible chat completion endpoints.

``OpenAIEndpoint`` POSTs a request body to ``{base_url}/chat/completions`` and returns the
``chat.completion`` object, streamed or not. It knows nothing of jobs or journals (the model
client journals what it returns) and imports nothing of the runtime; when the call is traced
(:mod:`aetheris.tracing`), each request carries the W3C ``traceparent`` of its span.

Retries: a retryable status (408, 409, 429, 500, 502, 503, 504), a timeout or a broken
connection is retried after an exponential backoff with jitter, or after the server's
``Retry-After``, both capped by ``max_backoff``. A streamed request is retried only while no
chunk has been delivered: once ``on_chunk`` has seen output, sending the request again would
deliver a second, different answer, so the failure is raised for the caller to decide.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import math
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from types import TracebackType
from typing import Any

import httpx

from aetheris.errors import ConfigurationError, InvalidInput, ModelError
from aetheris.observe import traceparent

__all__ = ["RETRYABLE_STATUSES", "ChunkCallback", "OpenAIEndpoint"]

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})

ChunkCallback = Callable[[dict[str, Any]], Awaitable[None] | None]


class _Retry(Exception):
    """An attempt failed in a way that sending the same request again may fix."""

    def __init__(self, error: ModelError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


async def _pause(seconds: float) -> None:
    """The wait between attempts (one place, so that tests can watch it)."""
    await asyncio.sleep(seconds)


class OpenAIEndpoint:
    """One OpenAI-compatible endpoint, e.g. ``OpenAIEndpoint("http://127.0.0.1:8000/v1")``.

    ``timeout`` bounds each attempt's connect, write and every read (between two streamed
    chunks too); ``max_retries`` is the number of attempts after the first. ``headers`` are
    sent with every request (they may override ``Authorization``, for servers that want
    another scheme); ``transport`` replaces the network (``httpx.MockTransport`` in tests).

    The HTTP client is created lazily in the running event loop and keeps its connections
    open between calls. Used from another loop later, the endpoint opens a new client there
    (the old one's connections belong to the old loop and cannot be reused), so close it with
    ``aclose()`` (or ``async with``) in the loop that used it, before that loop ends.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        _check_settings(timeout, max_retries, backoff, max_backoff)
        self.url, self.shown_url = _endpoint_urls(base_url)
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._api_key = api_key or None
        self._headers = {"Accept": "application/json"}
        if self._api_key:
            self._headers["Authorization"] = f"Bearer {self._api_key}"
        self._headers.update(headers or {})
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"OpenAIEndpoint({self.shown_url!r})"

    async def complete(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``body`` (without any ``stream`` fields) and return the ``chat.completion``."""
        payload = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        content = self._encode(payload)
        return await self._retrying(lambda: self._complete_once(content))

    async def stream(
        self, body: Mapping[str, Any], on_chunk: ChunkCallback | None = None
    ) -> dict[str, Any]:
        """POST ``body`` as a stream; ``on_chunk`` sees each chunk, in order, as it arrives.

        Returns one ``chat.completion`` assembled from the chunks, shaped as ``complete``
        returns it, with ``usage`` when the server sends it (it is asked to).
        """
        options = dict(body.get("stream_options") or {})
        payload = {**body, "stream": True, "stream_options": {**options, "include_usage": True}}
        content = self._encode(payload)
        return await self._retrying(lambda: self._stream_once(content, on_chunk))

    async def aclose(self) -> None:
        """Close the HTTP client (a later call opens a new one)."""
        client, loop = self._client, self._loop
        self._client = self._loop = None
        if client is not None and loop is asyncio.get_running_loop():
            await client.aclose()

    async def __aenter__(self) -> OpenAIEndpoint:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- attempts ---------------------------------------------------------------------------

    async def _retrying(self, attempt: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        retries = 0
        while True:
            try:
                return await attempt()
            except _Retry as failed:
                if retries >= self.max_retries:
                    error = failed.error
                    tried = f"gave up after {retries + 1} attempt{'s' if retries else ''}"
                    raise ModelError(
                        f"{error} ({tried})", status=error.status, retryable=True
                    ) from failed.__cause__
                await _pause(self._delay(retries, failed.retry_after))
                retries += 1

    def _delay(self, retries: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff)
        cap = min(self.max_backoff, self.backoff * 2.0**retries)
        return cap / 2 + random.uniform(0, cap / 2)

    async def _complete_once(self, content: bytes) -> dict[str, Any]:
        with self._transport_errors():
            response = await self._http().send(self._request(content, "application/json"))
            await self._check_status(response)
        return self._completion(response)

    async def _stream_once(self, content: bytes, on_chunk: ChunkCallback | None) -> dict[str, Any]:
        assembly = _Assembly()
        with self._transport_errors():
            request = self._request(content, "text/event-stream")
            response = await self._http().send(request, stream=True)
        try:
            with self._transport_errors():
                await self._check_status(response)
            self._check_event_stream(response)
            async with contextlib.aclosing(_sse_data(response.aiter_lines())) as events:
                while (data := await self._next_event(events, assembly)) is not None:
                    chunk = self._chunk(data, assembly)
                    assembly.add(chunk)
                    await _deliver(on_chunk, chunk)
        finally:
            await response.aclose()
        return assembly.result()

    async def _next_event(self, events: AsyncIterator[str], assembly: _Assembly) -> str | None:
        """The next event's data; ``None`` at ``[DONE]`` (or at a clean end without it)."""
        try:
            with self._transport_errors():
                data = await anext(events, None)
        except _Retry as failed:
            if not assembly.chunks:
                raise
            raise self._cut(failed.error, assembly) from failed.__cause__
        if data is None and not assembly.finished():
            error = self._error("the event stream ended before [DONE]", retryable=True)
            if not assembly.chunks:
                raise _Retry(error)
            raise self._cut(error, assembly)
        return None if data in (None, "[DONE]") else data

    # -- HTTP -------------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = httpx.AsyncClient(
                headers=self._headers, timeout=self.timeout, transport=self._transport
            )
            self._loop = loop
        return self._client

    def _request(self, content: bytes, accept: str) -> httpx.Request:
        headers = {"Content-Type": "application/json", "Accept": accept}
        trace = traceparent()  # the model call's span, when traced: the server may join it
        if trace is not None:
            headers["traceparent"] = trace
        return self._http().build_request("POST", self.url, content=content, headers=headers)

    def _encode(self, payload: Mapping[str, Any]) -> bytes:
        try:
            return json.dumps(payload, ensure_ascii=False, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"request body for {self.shown_url} is not JSON: {exc}") from exc

    @contextlib.contextmanager
    def _transport_errors(self) -> Iterator[None]:
        """httpx's errors as ours: timeouts and broken connections are worth a retry."""
        try:
            yield
        except httpx.TimeoutException as exc:
            what = f"timed out after {self.timeout:g} s ({type(exc).__name__})"
            raise _Retry(self._error(what, retryable=True)) from exc
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            what = f"connection failed ({type(exc).__name__}: {exc})"
            raise _Retry(self._error(what, retryable=True)) from exc
        except httpx.HTTPError as exc:
            raise self._error(f"request failed ({type(exc).__name__}: {exc})") from exc

    async def _check_status(self, response: httpx.Response) -> None:
        if response.is_success:
            return
        await response.aread()
        status = response.status_code
        retryable = status in RETRYABLE_STATUSES
        what = f"answered HTTP {status}: {_server_message(response)}"
        error = self._error(what, status=status, retryable=retryable)
        if retryable:
            raise _Retry(error, _retry_after(response))
        raise error

    def _check_event_stream(self, response: httpx.Response) -> None:
        kind = response.headers.get("content-type", "")
        if not kind.startswith("text/event-stream"):
            raise self._error(
                f"answered a stream request with {kind or 'no content type'}, "
                "not text/event-stream",
                status=response.status_code,
            )

    # -- bodies -----------------------------------------------------------------------------

    def _completion(self, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            text = response.text.strip()[:200]
            raise self._error(
                f"answered a body that is not JSON: {text!r}", status=status
            ) from None
        if isinstance(body, dict) and "error" in body:
            raise self._error(f"answered an error: {_error_text(body)}", status=status)
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
            text = json.dumps(body)[:200]
            raise self._error(f"answered JSON without choices: {text}", status=status)
        return body

    def _chunk(self, data: str, assembly: _Assembly) -> dict[str, Any]:
        try:
            chunk = json.loads(data)
        except ValueError:
            chunk = None
        if not isinstance(chunk, dict):
            raise self._error(f"sent an event that is not a JSON object: {data[:200]!r}")
        if "error" in chunk:
            error = self._error(f"sent an error event: {_error_text(chunk)}")
            raise self._cut(error, assembly) if assembly.chunks else error
        return chunk

    def _error(
        self, what: str, *, status: int | None = None, retryable: bool = False
    ) -> ModelError:
        message = f"model endpoint {self.shown_url} {what}"
        if self._api_key:
            message = message.replace(self._api_key, "***")
        return ModelError(message, status=status, retryable=retryable)

    def _cut(self, error: ModelError, assembly: _Assembly) -> ModelError:
        """A stream that failed after delivering chunks: not retried here, but retryable."""
        n = assembly.chunks
        return ModelError(
            f"{error} after {n} chunk{'s' if n != 1 else ''} had been delivered (not retried)",
            status=error.status,
            retryable=True,
        )


def _check_settings(timeout: float, max_retries: int, backoff: float, max_backoff: float) -> None:
    if not timeout > 0:
        raise ConfigurationError(f"timeout must be positive seconds, not {timeout!r}")
    if max_retries < 0:
        raise ConfigurationError(f"max_retries must be 0 or more, not {max_retries!r}")
    if not (backoff >= 0 and max_backoff >= 0):
        raise ConfigurationError(
            f"backoff and max_backoff must be 0 or more seconds, not {backoff!r}, {max_backoff!r}"
        )


def _endpoint_urls(base_url: str) -> tuple[str, str]:
    """The chat completions URL, and the same without user, password or query, to show."""
    try:
        base = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise ConfigurationError(f"invalid model endpoint URL {base_url!r}: {exc}") from exc
    if base.scheme not in ("http", "https") or not base.host:
        raise ConfigurationError(
            f"model endpoint URL must be http(s)://HOST[:PORT]/PATH, not {base_url!r}"
        )
    url = base.copy_with(path=base.path.rstrip("/") + "/chat/completions")
    shown = url.copy_with(username=None, password=None, query=None)
    return str(url), str(shown)


def _server_message(response: httpx.Response) -> str:
    """The server's own words: an OpenAI error body's message, else the start of the text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and ("error" in body or "detail" in body):
        return _error_text(body)
    text = response.text.strip()
    return text[:500] if text else f"{response.reason_phrase or 'no reason'} (empty body)"


def _error_text(body: dict[str, Any]) -> str:
    """``{"error": {"message", "type", "code"}}`` (or a bare string, or FastAPI's ``detail``)."""
    error = body.get("error", body.get("detail"))
    if isinstance(error, dict) and error.get("message"):
        extras = [str(error[key]) for key in ("type", "code") if error.get(key)]
        return str(error["message"]) + (f" ({', '.join(extras)})" if extras else "")
    if isinstance(error, str) and error:
        return error
    return json.dumps(body)[:500]


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from ``Retry-After`` (or OpenAI's ``retry-after-ms``); a date is ignored."""
    for header, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            seconds = float(response.headers.get(header, "")) * scale
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


async def _sse_data(lines: AsyncIterator[str]) -> AsyncGenerator[str, None]:
    """The data of each server-sent event; comments and other fields are skipped."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value.removeprefix(" "))
    if data:
        yield "\n".join(data)


async def _deliver(on_chunk: ChunkCallback | None, chunk: dict[str, Any]) -> None:
    if on_chunk is None:
        return
    outcome = on_chunk(chunk)
    if inspect.isawaitable(outcome):
        await outcome


class _Choice:
    """One choice of a stream, put together from its deltas."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.role: str | None = None
        self.content: list[str] | None = None
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None

    def add(self, choice: Mapping[str, Any]) -> None:
        delta = choice.get("delta") or {}
        self.role = self.role or delta.get("role")
        if isinstance(delta.get("content"), str):
            self.content = [*(self.content or []), delta["content"]]
        for position, call in enumerate(delta.get("tool_calls") or []):
            self._add_tool_call(call.get("index", position), call)
        if choice.get("finish_reason") is not None:
            self.finish_reason = choice["finish_reason"]

    def _add_tool_call(self, index: int, call: Mapping[str, Any]) -> None:
        blank = {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
        slot = self.tool_calls.setdefault(index, blank)
        slot["id"] = call.get("id") or slot["id"]
        slot["type"] = call.get("type") or slot["type"]
        function = call.get("function") or {}
        # The name comes whole in one delta; the arguments come in fragments.
        slot["function"]["name"] = slot["function"]["name"] or function.get("name") or ""
        slot["function"]["arguments"] += function.get("arguments") or ""

    def result(self) -> dict[str, Any]:
        content = None if self.content is None else "".join(self.content)
        message: dict[str, Any] = {"role": self.role or "assistant", "content": content}
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        return {"index": self.index, "message": message, "finish_reason": self.finish_reason}


class _Assembly:
    """The chunks of a stream so far, and the ``chat.completion`` they make."""

    def __init__(self) -> None:
        self.chunks = 0
        self.head: dict[str, Any] = {}
        self.choices: dict[int, _Choice] = {}
        self.usage: dict[str, Any] | None = None

    def add(self, chunk: Mapping[str, Any]) -> None:
        self.chunks += 1
        for key in ("id", "created", "model", "system_fingerprint"):
            if chunk.get(key) is not None:
                self.head.setdefault(key, chunk[key])
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            index = choice.get("index", 0)
            self.choices.setdefault(index, _Choice(index)).add(choice)

    def finished(self) -> bool:
        """Every choice has its finish reason (a server may close without ``[DONE]``)."""
        return bool(self.choices) and all(c.finish_reason for c in self.choices.values())

    def result(self) -> dict[str, Any]:
        completion: dict[str, Any] = {
            "id": self.head.get("id"),
            "object": "chat.completion",
            "created": self.head.get("created"),
            "model": self.head.get("model"),
            "choices": [self.choices[i].result() for i in sorted(self.choices)],
        }
        if "system_fingerprint" in self.head:
            completion["system_fingerprint"] = self.head["system_fingerprint"]
        if self.usage is not None:
            completion["usage"] = self.usage
        return completion
