"""Limits on request bodies, checked before any route reads one: their size, and how deep
their JSON nests.

Both guard the server, not the payload's meaning. A body over the size limit is refused as it
streams in (413); one whose arrays and objects nest over :data:`MAX_DEPTH` levels is refused
(422) before a parser, a validator or the journal's canonical encoder (all recursive) sees it,
so no client can turn a deep body into a server error.
"""

from __future__ import annotations

import itertools
import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aetheris.api.errors import error_body

MAX_DEPTH = 64  # levels of arrays and objects in a JSON body
TOO_DEEP = f"the request body nests over {MAX_DEPTH} levels"
SELF_CHECKED = ("/v1/hooks/",)  # routes that authenticate a body before they look into it

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _STEP)


def nesting(body: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest (brackets in strings do not
    count); linear in its length, and a text that is not JSON gets some number too."""
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    return max(0, max(itertools.accumulate(_STEP[b] for b in brackets), default=0))


class LimitBody:
    """Refuse a request body over ``limit`` bytes with 413, before the app reads any of it
    (declared length) or as soon as it passes the limit (streamed bodies); and one that nests
    over :data:`MAX_DEPTH` levels with 422 (routes of :data:`SELF_CHECKED` check it themselves,
    after the request's signature)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _refuse(send, 413, _too_large(self.limit))
            return
        body, more = [], True
        size = 0
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                await _refuse(send, 413, _too_large(self.limit))
                return
            body.append(message.get("body", b""))
            more = message.get("more_body", False)
        whole = b"".join(body)
        checked = not str(scope.get("path", "")).startswith(SELF_CHECKED)
        if checked and nesting(whole) > MAX_DEPTH:
            await _refuse(send, 422, error_body("invalid_input", TOO_DEEP))
            return
        await self.app(scope, _replay(whole, receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # then: the disconnect, when it comes

    return replay


def _too_large(limit: int) -> dict[str, object]:
    return error_body("payload_too_large", f"the request body is over {limit} bytes")


async def _refuse(send: Send, status: int, doc: dict[str, object]) -> None:
    payload = json.dumps(doc).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
