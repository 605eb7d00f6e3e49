"""A scripted OpenAI-compatible chat completion server, for tests (standard library only).

Run it as a process (``python -m aetheris.llm.stub --script FILE.json [--port 0]``: the first
line on standard output is ``listening on http://127.0.0.1:PORT/v1``) or in-process
(``with StubServer(script) as stub: stub.url``). It listens on loopback only.

The script is JSON::

    {"replies": [{"content": "Paris."},
                 {"tool_calls": [{"name": "lookup", "arguments": {"q": "x"}, "id": "call_1"}],
                  "usage": {"prompt_tokens": 10, "completion_tokens": 3},
                  "finish_reason": "tool_calls"},
                 {"match": "weather", "content": "Sunny."}],
     "faults": [{"status": 503, "times": 2},
                {"status": 429, "retry_after": 1, "times": 1},
                {"delay": 2.0, "times": 1},
                {"disconnect_after": 2, "times": 1}]}

Each ``POST /v1/chat/completions`` first takes the next fault whose ``times`` are not used up,
then an answer: the first reply with a ``match`` that is a substring of the last user message,
or a ``match_last`` that is a substring of the last message whatever its role (a tool's
result: rules can script a tool loop; rules are never used up), else the next reply in order;
when they run out the answer is HTTP 500 "script exhausted". A ``status`` fault answers that
error instead (the script does not move on); ``delay`` sleeps before answering;
``disconnect_after`` hangs up after that many streamed chunks (a request that is not streamed
gets no answer at all). Without ``usage`` the token counts are the whitespace-separated words
of the request's messages and of the reply.

``"stream": true`` is answered with server-sent events: one chunk per word of the content,
tool calls as a name then argument fragments, a chunk with the finish reason, a usage chunk
when ``stream_options.include_usage`` is set, and ``data: [DONE]``. Other request fields
(``response_format``, ``tools``, ...) are recorded, not enforced.

``GET /v1/_stub/requests`` lists the chat completion request bodies received, in order (in
process, ``StubServer.traceparents`` has their W3C ``traceparent`` headers), and
``GET /v1/_stub/stats`` is ``{"calls": N}`` (a request refused before the script, for a wrong
key or a body without ``messages``, is not among them); ``GET /v1/models`` lists the one model.
With ``--state FILE`` the cursor (replies and faults used, calls) survives a restart of the
stub on the same script; the list of requests starts empty in each process.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import os
import re
import socket
import socketserver
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Reply", "Script", "StubServer", "check_loopback", "main"]

REPLY_KEYS = {"content", "tool_calls", "usage", "finish_reason", "match", "match_last"}
FAULT_KEYS = {"status", "message", "retry_after", "delay", "disconnect_after", "times"}


def check_loopback(host: str) -> None:
    """Refuse any host but loopback: the stub answers anyone who can reach it."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"refusing to listen on {host!r}: the stub serves loopback only "
            "(127.0.0.1, ::1 or localhost)"
        )


@dataclass(frozen=True)
class Reply:
    """One scripted answer; ``tool_calls`` are in OpenAI's form, arguments as JSON text."""

    content: str | None
    tool_calls: list[dict[str, Any]]
    usage: dict[str, int] | None
    finish_reason: str
    match: str | None
    match_last: str | None = None

    def matches(self, last_user: str, last: str) -> bool:
        """Whether this rule answers a request whose last messages say this."""
        if self.match is not None and self.match in last_user:
            return True
        return self.match_last is not None and self.match_last in last

    @classmethod
    def parse(cls, raw: Any, where: str) -> Reply:
        if not isinstance(raw, dict) or not ({"content", "tool_calls"} & raw.keys()):
            raise ValueError(f'{where}: needs "content" or "tool_calls", got {raw!r}')
        if unknown := raw.keys() - REPLY_KEYS:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        content = raw.get("content")
        if content is not None and not isinstance(content, str):
            raise ValueError(f'{where}: "content" must be text, got {content!r}')
        usage = raw.get("usage")
        if usage is not None and not (
            isinstance(usage, dict) and all(isinstance(n, int) for n in usage.values())
        ):
            raise ValueError(f'{where}: "usage" must map token kinds to counts, got {usage!r}')
        for key in ("match", "match_last"):
            if raw.get(key) is not None and not isinstance(raw[key], str):
                raise ValueError(f'{where}: "{key}" must be text, got {raw[key]!r}')
        calls = [_tool_call(c, i, where) for i, c in enumerate(raw.get("tool_calls") or [])]
        finish = raw.get("finish_reason") or ("tool_calls" if calls else "stop")
        return cls(content, calls, usage, finish, raw.get("match"), raw.get("match_last"))


def _tool_call(raw: Any, index: int, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise ValueError(f'{where} tool call {index}: needs a "name", got {raw!r}')
    arguments = raw.get("arguments", {})
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    call_id = raw.get("id") or f"call_{index}"
    return {"id": call_id, "type": "function", "function": {"name": raw["name"], "arguments": text}}


@dataclass
class Fault:
    """A scripted failure for the next ``times`` requests."""

    times: int = 1
    status: int | None = None
    message: str | None = None
    retry_after: float | None = None
    delay: float = 0.0
    disconnect_after: int | None = None

    @classmethod
    def parse(cls, raw: Any, where: str) -> Fault:
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: must be an object, got {raw!r}")
        if unknown := raw.keys() - FAULT_KEYS:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        if not ({"status", "delay", "disconnect_after"} & raw.keys()):
            raise ValueError(f'{where}: needs "status", "delay" or "disconnect_after"')
        status = raw.get("status")
        if status is not None and not (isinstance(status, int) and 400 <= status <= 599):
            raise ValueError(f'{where}: "status" must be an HTTP error status, got {status!r}')
        for key in ("times", "disconnect_after", "retry_after", "delay"):
            value = raw.get(key, 0)
            kind = int if key in ("times", "disconnect_after") else (int, float)
            if not isinstance(value, kind) or isinstance(value, bool) or value < 0:
                raise ValueError(f'{where}: "{key}" must be a number, 0 or more, got {value!r}')
        return cls(**raw)


@dataclass(frozen=True)
class Turn:
    """What one request gets: its number, a fault (or none) and a reply (none: exhausted)."""

    call: int
    fault: Fault | None
    reply: Reply | None


@dataclass
class Script:
    """A script's replies, rules and faults, and how far requests got (thread-safe)."""

    replies: list[Reply]
    rules: list[Reply]
    faults: list[Fault]
    digest: str
    state_path: Path | None = None
    cursor: int = 0
    calls: int = 0
    requests: list[Any] = field(default_factory=list)
    traceparents: list[str | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, source: Mapping[str, Any] | str | Path, state_path: Path | None = None) -> Script:
        """From a mapping or a JSON file; with ``state_path``, continue where it was left."""
        where = "script"
        if isinstance(source, str | Path):
            where = f"script {source}"
            try:
                source = json.loads(Path(source).read_text("utf-8"))
            except (OSError, ValueError) as exc:
                raise ValueError(f"cannot read {where}: {exc}") from exc
        if not isinstance(source, Mapping) or source.keys() - {"replies", "faults"}:
            raise ValueError(f'{where}: must be {{"replies": [...], "faults": [...]}}')
        parsed = [
            Reply.parse(r, f"{where} reply {i}") for i, r in enumerate(source.get("replies", []))
        ]
        faults = [
            Fault.parse(f, f"{where} fault {i}") for i, f in enumerate(source.get("faults", []))
        ]
        digest = hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()
        script = cls(
            replies=[r for r in parsed if r.match is None and r.match_last is None],
            rules=[r for r in parsed if r.match is not None or r.match_last is not None],
            faults=faults,
            digest=digest,
            state_path=state_path,
        )
        script._restore()
        return script

    def take(self, body: Any, traceparent: str | None = None) -> Turn:
        """Record a request (and its ``traceparent`` header) and decide its answer."""
        with self.lock:
            self.requests.append(body)
            self.traceparents.append(traceparent)
            self.calls += 1
            fault = next((f for f in self.faults if f.times > 0), None)
            if fault is not None:
                fault.times -= 1
            reply = None if fault and fault.status else self._reply(body)
            self._save()
            return Turn(self.calls, fault, reply)

    def _reply(self, body: Any) -> Reply | None:
        said, last = _last_user_text(body), _last_text(body)
        for rule in self.rules:
            if rule.matches(said, last):
                return rule
        if self.cursor >= len(self.replies):
            return None
        self.cursor += 1
        return self.replies[self.cursor - 1]

    def _restore(self) -> None:
        if self.state_path is None or not self.state_path.exists():
            return
        try:
            state = json.loads(self.state_path.read_text("utf-8"))
            if state.get("script_sha256") != self.digest:
                raise ValueError("it belongs to another script")
            self.cursor, self.calls = int(state["cursor"]), int(state["calls"])
            for fault, times in zip(self.faults, state["faults_left"], strict=True):
                fault.times = int(times)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"cannot continue from state file {self.state_path}: {exc}") from exc

    def _save(self) -> None:
        """Write the cursor to the state file atomically (a new file renamed over the old)."""
        if self.state_path is None:
            return
        state = {
            "script_sha256": self.digest,
            "cursor": self.cursor,
            "calls": self.calls,
            "faults_left": [f.times for f in self.faults],
        }
        folder = self.state_path.parent
        fd, tmp = tempfile.mkstemp(prefix=".stub-state-", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(state, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.state_path)


def _last_user_text(body: Any) -> str:
    messages = body.get("messages") if isinstance(body, dict) else None
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text(message.get("content"))
    return ""


def _last_text(body: Any) -> str:
    messages = body.get("messages") if isinstance(body, dict) else None
    last = messages[-1] if isinstance(messages, list) and messages else None
    return _text(last.get("content")) if isinstance(last, dict) else ""


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _words(text: str) -> int:
    return len(text.split())


def _usage(reply: Reply, body: Mapping[str, Any]) -> dict[str, int]:
    given = reply.usage or {}
    prompt = sum(_words(_text(m.get("content"))) for m in body["messages"] if isinstance(m, dict))
    said = [reply.content or ""] + [
        f"{c['function']['name']} {c['function']['arguments']}" for c in reply.tool_calls
    ]
    prompt = given.get("prompt_tokens", prompt)
    completion = given.get("completion_tokens", sum(_words(s) for s in said))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _pieces(text: str) -> list[str]:
    """``text`` cut after each run of whitespace: the pieces join back to it exactly."""
    return [piece for piece in re.split(r"(?<=\s)(?=\S)", text) if piece]


def _head(turn: Turn, body: Mapping[str, Any], model: str, kind: str) -> dict[str, Any]:
    asked = body.get("model")
    return {
        "id": f"chatcmpl-stub-{turn.call}",
        "object": kind,
        "created": int(time.time()),
        "model": asked if isinstance(asked, str) and asked else model,
    }


def completion(turn: Turn, reply: Reply, body: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The ``chat.completion`` object for a request that is not streamed."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = reply.tool_calls
    choice = {"index": 0, "message": message, "finish_reason": reply.finish_reason}
    return {
        **_head(turn, body, model, "chat.completion"),
        "choices": [choice],
        "usage": _usage(reply, body),
    }


def chunks(turn: Turn, reply: Reply, body: Mapping[str, Any], model: str) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of a streamed answer, in order."""
    head = _head(turn, body, model, "chat.completion.chunk")
    options = body.get("stream_options")
    with_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    tail = {"usage": None} if with_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **tail}

    first = {"role": "assistant", "content": None if reply.content is None else ""}
    out = [chunk(first)] + [chunk({"content": p}) for p in _pieces(reply.content or "")]
    for index, call in enumerate(reply.tool_calls):
        start = {**call, "index": index, "function": {**call["function"], "arguments": ""}}
        out.append(chunk({"tool_calls": [start]}))
        for piece in _pieces(call["function"]["arguments"]):
            fragment = {"index": index, "function": {"arguments": piece}}
            out.append(chunk({"tool_calls": [fragment]}))
    out.append(chunk({}, reply.finish_reason))
    if with_usage:
        out.append({**head, "choices": [], "usage": _usage(reply, body)})
    return out


def error_body(status: int, message: str) -> dict[str, Any]:
    """An OpenAI-style error object."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    if status == 429:
        kind = "rate_limit_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


class _Server(ThreadingHTTPServer):
    """The HTTP server and what its handlers share; stops without waiting for sleepers."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, host: str, port: int, script: Script, model: str, api_key: str | None):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.script = script
        self.model = model
        self.api_key = api_key
        self.stopping = threading.Event()
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host's name up (getfqdn), which can stall.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    @property
    def url(self) -> str:
        host = self.server_name
        return f"http://{f'[{host}]' if ':' in host else host}:{self.server_port}/v1"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the requests through ``/v1/_stub/requests``."""

    def do_GET(self) -> None:
        script = self.server.script
        path = urlsplit(self.path).path.rstrip("/")
        if path == "/v1/_stub/requests":
            with script.lock:
                self._send_json(200, list(script.requests))
        elif path == "/v1/_stub/stats":
            self._send_json(200, {"calls": script.calls})
        elif path == "/v1/models":
            model = {"id": self.server.model, "object": "model", "created": 0, "owned_by": "stub"}
            self._send_json(200, {"object": "list", "data": [model]})
        else:
            self._send_error(404, f"no route GET {path}")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        body = self._read_body()
        if path != "/v1/chat/completions":
            self._send_error(404, f"no route POST {path}")
        elif (
            self.server.api_key
            and self.headers.get("Authorization") != f"Bearer {self.server.api_key}"
        ):
            self._send_error(401, "missing or wrong API key")
        elif not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self._send_error(400, 'the body must be a JSON object with a "messages" list')
        else:
            try:
                turn = self.server.script.take(body, self.headers.get("traceparent"))
                self._answer(turn, body)
            except ConnectionError:  # the client gave up (a timeout): nobody to answer
                self.close_connection = True

    def _read_body(self) -> Any:
        try:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            return None

    def _answer(self, turn: Turn, body: dict[str, Any]) -> None:
        fault = turn.fault or Fault(times=0)
        if fault.delay and self.server.stopping.wait(fault.delay):
            self.close_connection = True
            return
        if fault.status:
            message = fault.message or f"stub fault: HTTP {fault.status} {_phrase(fault.status)}"
            after = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            self._send_error(fault.status, message, after)
        elif turn.reply is None:
            used = len(self.server.script.replies)
            self._send_error(
                500, f"script exhausted: all {used} replies are used (call {turn.call})"
            )
        elif body.get("stream"):
            self._stream(chunks(turn, turn.reply, body, self.server.model), fault.disconnect_after)
        elif fault.disconnect_after is not None:
            self.close_connection = True
        else:
            self._send_json(200, completion(turn, turn.reply, body, self.server.model))

    def _stream(self, events: Sequence[dict[str, Any]], cut: int | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for sent, event in enumerate(events):
            if sent == cut:
                self.close_connection = True  # hang up mid-stream, without the last chunk
                return
            self._write_chunk(f"data: {json.dumps(event)}\n\n".encode())
        self._write_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _send_json(self, status: int, value: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, text in (headers or {}).items():
            self.send_header(name, text)
        self.end_headers()
        self.wfile.write(data)

    def _send_error(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self._send_json(status, error_body(status, message), headers)


class StubServer:
    """The stub in a thread of this process: ``with StubServer(script) as stub: stub.url``."""

    def __init__(
        self,
        script: Mapping[str, Any] | str | Path | Script,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        model: str = "stub",
        state_path: str | Path | None = None,
        api_key: str | None = None,
    ) -> None:
        check_loopback(host)
        state = Path(state_path) if state_path is not None else None
        self.script = script if isinstance(script, Script) else Script.load(script, state)
        self._settings = (host, port, model, api_key)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:PORT/v1``."""
        if self._server is None:
            raise RuntimeError("the stub server is not started")
        return self._server.url

    @property
    def calls(self) -> int:
        """Chat completion requests received so far."""
        return self.script.calls

    @property
    def requests(self) -> list[Any]:
        """The chat completion request bodies received so far, in order."""
        with self.script.lock:
            return list(self.script.requests)

    @property
    def traceparents(self) -> list[str | None]:
        """The ``traceparent`` header of each request received (``None``: none), in order."""
        with self.script.lock:
            return list(self.script.traceparents)

    def start(self) -> StubServer:
        """Listen (on a free port unless one was given) and serve in a daemon thread."""
        self._server = self._bind()
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="aetheris-llm-stub", daemon=True
        )
        self._thread.start()
        return self

    def _bind(self) -> _Server:
        host, port, model, api_key = self._settings
        return _Server(host, port, self.script, model, api_key)

    def stop(self) -> None:
        """Stop serving; a request sleeping in a ``delay`` fault is hung up on."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join()
        self._server = self._thread = None

    def __enter__(self) -> StubServer:
        return self if self._server is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m aetheris.llm.stub --script FILE.json``: serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m aetheris.llm.stub",
        description="A scripted OpenAI-compatible chat completion server, for tests.",
    )
    parser.add_argument("--script", required=True, help="the JSON script of replies and faults")
    parser.add_argument(
        "--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=0, help="0 (default) picks a free port")
    parser.add_argument("--model", default="stub", help="the model /v1/models lists")
    parser.add_argument("--state", help="a file that keeps the script's cursor across restarts")
    parser.add_argument("--api-key", help="answer 401 unless this bearer key is sent")
    args = parser.parse_args(argv)
    try:
        stub = StubServer(
            args.script,
            host=args.host,
            port=args.port,
            model=args.model,
            state_path=args.state,
            api_key=args.api_key,
        )
        server = stub._bind()
    except (ValueError, OSError) as exc:
        print(f"stub: {exc}", file=sys.stderr)
        return 2
    print(f"listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
