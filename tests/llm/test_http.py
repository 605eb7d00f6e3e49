"""The model endpoint's transport against the scripted OpenAI-compatible stub.

Retries and streaming run against the stub as a real process (``python -m
aetheris.llm.stub``), so the bytes on the wire are a real server's; the rest uses the stub in a
thread of the test process. Waits between attempts are recorded, not slept, where a test
checks them.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import aetheris.llm.http as llm_http
from aetheris.errors import ConfigurationError, ModelError
from aetheris.llm import OpenAIEndpoint
from aetheris.llm.stub import StubServer

ROOT = Path(__file__).resolve().parents[2]
FAST = {"backoff": 0.01, "max_backoff": 0.05}
KEY = "sk-test-not-a-real-key"
ASK = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "The capital?"}]
TOOL_REPLY = {
    "match": "weather",
    "tool_calls": [
        {"name": "lookup", "arguments": {"city": "Paris", "what": "the weather"}, "id": "call_a"},
        {"name": "convert", "arguments": {"unit": "celsius"}, "id": "call_b"},
    ],
}
TEXT_REPLY = {"match": "capital", "content": "Paris is the capital of France."}


@contextlib.contextmanager
def stub_process(tmp_path: Path, script: dict[str, Any], *options: str) -> Iterator[str]:
    """The stub as a process on a free port; yields its base URL."""
    path = tmp_path / "script.json"
    path.write_text(json.dumps(script), "utf-8")
    paths = [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    command = [sys.executable, "-m", "aetheris.llm.stub", "--script", str(path), "--port", "0"]
    proc = subprocess.Popen(
        [*command, *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("listening on "):
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the stub did not start: {line}{out}{err}")
        yield line.removeprefix("listening on ").strip()
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


async def stub_get(url: str, path: str) -> Any:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{url}/{path}")
        response.raise_for_status()
        return response.json()


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits between attempts, recorded instead of slept."""
    seen: list[float] = []

    async def record(seconds: float) -> None:
        seen.append(seconds)

    monkeypatch.setattr(llm_http, "_pause", record)
    return seen


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def message(completion: dict[str, Any]) -> dict[str, Any]:
    choice: dict[str, Any] = completion["choices"][0]
    return choice["message"]


# -- completions --------------------------------------------------------------------------------


async def test_plain_completion() -> None:
    script = {"replies": [{"content": "Paris is the capital of France."}]}
    with StubServer(script, api_key=KEY) as stub:
        async with OpenAIEndpoint(stub.url + "/", KEY) as model:
            done = await model.complete({"model": "m1", "messages": ASK, "temperature": 0})
        sent = stub.requests
    assert done["object"] == "chat.completion"
    assert done["model"] == "m1"
    assert message(done) == {"role": "assistant", "content": "Paris is the capital of France."}
    assert done["choices"][0]["finish_reason"] == "stop"
    assert done["usage"] == {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}
    assert sent == [{"model": "m1", "messages": ASK, "temperature": 0}]


async def test_tool_call_reply() -> None:
    with StubServer({"replies": [TOOL_REPLY | {"match": None}]}) as stub:
        async with OpenAIEndpoint(stub.url) as model:
            done = await model.complete({"model": "m", "messages": ASK, "tools": []})
    calls = message(done)["tool_calls"]
    assert message(done)["content"] is None
    assert [(c["id"], c["type"], c["function"]["name"]) for c in calls] == [
        ("call_a", "function", "lookup"),
        ("call_b", "function", "convert"),
    ]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris", "what": "the weather"}
    assert done["choices"][0]["finish_reason"] == "tool_calls"


async def test_response_format_is_passed_through_and_content_returned_as_is() -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "city", "schema": {"type": "object"}}}
    with StubServer({"replies": [{"content": "not JSON at all"}]}) as stub:
        async with OpenAIEndpoint(stub.url) as model:
            done = await model.complete({"messages": ASK, "response_format": schema})
        assert stub.requests[0]["response_format"] == schema
    assert message(done)["content"] == "not JSON at all"


async def test_a_bad_request_is_raised_at_once_with_the_servers_message() -> None:
    fault = {"status": 400, "message": "Invalid value for 'temperature': 7", "times": 1}
    with StubServer({"replies": [{"content": "unused"}], "faults": [fault]}) as stub:
        url = stub.url
        async with OpenAIEndpoint(url, KEY, **FAST) as model:
            with pytest.raises(ModelError) as raised:
                await model.complete({"messages": ASK, "temperature": 7})
        assert stub.calls == 1
    error = raised.value
    assert (error.status, error.retryable) == (400, False)
    assert "Invalid value for 'temperature': 7" in str(error)
    assert f"{url}/chat/completions" in str(error)
    assert KEY not in str(error)


async def test_a_wrong_key_is_not_retried_and_not_shown() -> None:
    with StubServer({"replies": [{"content": "unused"}]}, api_key="sk-right") as stub:
        async with OpenAIEndpoint(stub.url, KEY, **FAST) as model:
            with pytest.raises(ModelError) as raised:
                await model.complete({"messages": ASK})
    assert raised.value.status == 401
    assert "missing or wrong API key" in str(raised.value)
    assert KEY not in str(raised.value)


async def test_an_exhausted_script_is_a_server_error() -> None:
    with StubServer({"replies": []}) as stub:
        async with OpenAIEndpoint(stub.url, max_retries=0) as model:
            with pytest.raises(ModelError, match="script exhausted") as raised:
                await model.complete({"messages": ASK})
    assert (raised.value.status, raised.value.retryable) == (500, True)


@pytest.mark.parametrize(
    ("answer", "complaint"),
    [
        (httpx.Response(200, text="<html>proxy says hi</html>"), "not JSON"),
        (httpx.Response(200, json={"object": "list"}), "without choices"),
        (httpx.Response(200, json={"error": {"message": "quota"}}), "answered an error: quota"),
    ],
)
async def test_an_answer_that_is_no_completion_is_a_clear_error(
    answer: httpx.Response, complaint: str
) -> None:
    transport = httpx.MockTransport(lambda request: answer)
    async with OpenAIEndpoint("http://model.test/v1", transport=transport) as model:
        with pytest.raises(ModelError, match=complaint) as raised:
            await model.complete({"messages": ASK})
    assert "http://model.test/v1/chat/completions" in str(raised.value)
    assert not raised.value.retryable


def test_a_base_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="http"):
        OpenAIEndpoint("ftp://example.com/v1")


# -- retries ------------------------------------------------------------------------------------


async def test_503_twice_then_success(tmp_path: Path, pauses: list[float]) -> None:
    script = {"replies": [{"content": "third time"}], "faults": [{"status": 503, "times": 2}]}
    with stub_process(tmp_path, script) as url:
        async with OpenAIEndpoint(url, KEY, backoff=0.2, max_backoff=0.3) as model:
            done = await model.complete({"messages": ASK})
        assert await stub_get(url, "_stub/stats") == {"calls": 3}
    assert message(done)["content"] == "third time"
    assert len(pauses) == 2
    assert all(0 < p <= 0.3 for p in pauses)


async def test_429_waits_as_long_as_retry_after_says(tmp_path: Path, pauses: list[float]) -> None:
    faults = [
        {"status": 429, "retry_after": 1, "times": 1},
        {"status": 429, "retry_after": 30, "times": 1},
    ]
    with stub_process(tmp_path, {"replies": [{"content": "ok"}], "faults": faults}) as url:
        async with OpenAIEndpoint(url, backoff=0.01, max_backoff=5) as model:
            done = await model.complete({"messages": ASK})
        assert await stub_get(url, "_stub/stats") == {"calls": 3}
    assert message(done)["content"] == "ok"
    assert pauses == [1.0, 5.0]  # Retry-After, then Retry-After capped by max_backoff


async def test_retries_exhausted(tmp_path: Path) -> None:
    script = {"replies": [{"content": "never"}], "faults": [{"status": 503, "times": 10}]}
    with stub_process(tmp_path, script) as url:
        async with OpenAIEndpoint(url, KEY, max_retries=2, **FAST) as model:
            with pytest.raises(ModelError) as raised:
                await model.complete({"messages": ASK})
        assert await stub_get(url, "_stub/stats") == {"calls": 3}
    error = raised.value
    assert (error.status, error.retryable) == (503, True)
    assert f"{url}/chat/completions" in str(error)
    assert "gave up after 3 attempts" in str(error)
    assert KEY not in str(error)


async def test_a_timeout_is_retried() -> None:
    # The abandoned first request used the first reply, as a real model would have.
    script = {
        "replies": [{"content": "too late"}, {"content": "in time"}],
        "faults": [{"delay": 5.0, "times": 1}],
    }
    with StubServer(script) as stub:
        async with OpenAIEndpoint(stub.url, timeout=0.3, **FAST) as model:
            done = await model.complete({"messages": ASK})
        assert stub.calls == 2
    assert message(done)["content"] == "in time"


async def test_a_refused_connection_is_retried_then_named() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    async with OpenAIEndpoint(url, max_retries=1, **FAST) as model:
        with pytest.raises(ModelError, match="connection failed") as raised:
            await model.complete({"messages": ASK})
    assert (raised.value.status, raised.value.retryable) == (None, True)
    assert f"{url}/chat/completions" in str(raised.value)


# -- streaming ----------------------------------------------------------------------------------


async def test_stream_assembles_what_complete_returns(tmp_path: Path) -> None:
    script = {"replies": [TEXT_REPLY, TOOL_REPLY]}
    weather = [{"role": "user", "content": "What is the weather in Paris?"}]
    with stub_process(tmp_path, script) as url:
        async with OpenAIEndpoint(url, KEY, **FAST) as model:
            for messages in (ASK, weather):
                whole = await model.complete({"model": "m", "messages": messages})
                seen: list[dict[str, Any]] = []
                streamed = await model.stream({"model": "m", "messages": messages}, seen.append)
                assert streamed["choices"] == whole["choices"]
                assert streamed["usage"] == whole["usage"]
                assert streamed["object"] == "chat.completion"
                assert (streamed["id"], streamed["model"]) == (seen[0]["id"], "m")
                assert seen[-1]["usage"] == whole["usage"]
        sent = await stub_get(url, "_stub/requests")
    assert sent[1]["stream"] is True
    assert sent[1]["stream_options"] == {"include_usage": True}
    assert "stream" not in sent[0]


async def test_on_chunk_sees_every_chunk_and_may_be_async(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    async def on_chunk(chunk: dict[str, Any]) -> None:
        seen.append(chunk)

    with stub_process(tmp_path, {"replies": [TEXT_REPLY]}) as url:
        async with OpenAIEndpoint(url, **FAST) as model:
            done = await model.stream({"messages": ASK}, on_chunk)
    deltas = [c["choices"][0]["delta"] for c in seen if c["choices"]]
    words = TEXT_REPLY["content"].split()
    # A first chunk with the role, one per word, one with the finish reason, one with usage.
    assert len(seen) == len(words) + 3
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content", "") for d in deltas) == message(done)["content"]
    assert seen[-2]["choices"][0]["finish_reason"] == "stop"
    assert seen[-1]["choices"] == []
    assert done["usage"]["completion_tokens"] == len(words)


async def test_a_stream_that_fails_before_its_first_chunk_is_retried(tmp_path: Path) -> None:
    faults = [{"status": 503, "times": 1}, {"disconnect_after": 0, "times": 1}]
    replies = [{"content": "lost"}, TEXT_REPLY | {"match": None}]
    with stub_process(tmp_path, {"replies": replies, "faults": faults}) as url:
        async with OpenAIEndpoint(url, **FAST) as model:
            seen: list[dict[str, Any]] = []
            done = await model.stream({"messages": ASK}, seen.append)
        assert await stub_get(url, "_stub/stats") == {"calls": 3}
    assert message(done)["content"] == TEXT_REPLY["content"]
    assert (
        "".join(c["choices"][0]["delta"].get("content", "") for c in seen if c["choices"])
        == (TEXT_REPLY["content"])
    )


async def test_a_stream_cut_after_chunks_is_raised_not_retried(tmp_path: Path) -> None:
    script = {"replies": [TEXT_REPLY], "faults": [{"disconnect_after": 2, "times": 1}]}
    with stub_process(tmp_path, script) as url:
        async with OpenAIEndpoint(url, **FAST) as model:
            seen: list[dict[str, Any]] = []
            with pytest.raises(ModelError, match="after 2 chunks") as raised:
                await model.stream({"messages": ASK}, seen.append)
        assert await stub_get(url, "_stub/stats") == {"calls": 1}
    assert len(seen) == 2
    assert raised.value.retryable


def sse(*events: dict[str, Any] | str) -> httpx.Response:
    lines = [": a comment\n\n"] + [
        f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events
    ]
    headers = {"Content-Type": "text/event-stream"}
    return httpx.Response(200, headers=headers, content="".join(lines).encode())


async def test_a_stream_may_end_without_done_once_every_choice_finished() -> None:
    delta = {"id": "c1", "created": 1, "model": "m", "object": "chat.completion.chunk"}
    events = [
        delta | {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]},
        delta | {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
    ]
    transport = httpx.MockTransport(lambda request: sse(*events))
    async with OpenAIEndpoint("http://model.test/v1", transport=transport) as model:
        done = await model.stream({"messages": ASK})
    assert message(done) == {"role": "assistant", "content": "Hi"}
    assert done["choices"][0]["finish_reason"] == "length"
    assert "usage" not in done


async def test_an_error_event_in_a_stream_is_raised_with_the_servers_message() -> None:
    error = {"error": {"message": "context length exceeded", "type": "invalid_request_error"}}
    transport = httpx.MockTransport(lambda request: sse(error, "[DONE]"))
    async with OpenAIEndpoint("http://model.test/v1", transport=transport) as model:
        with pytest.raises(ModelError, match="context length exceeded") as raised:
            await model.stream({"messages": ASK})
    assert not raised.value.retryable


# -- the stub itself ----------------------------------------------------------------------------


async def test_the_stub_state_file_continues_the_script_after_a_restart(tmp_path: Path) -> None:
    script = {"replies": [{"content": "one"}, {"content": "two"}]}
    options = ("--state", str(tmp_path / "state.json"), "--model", "tiny")
    for expected in ("one", "two"):
        with stub_process(tmp_path, script, *options) as url:
            async with OpenAIEndpoint(url, max_retries=0) as model:
                assert message(await model.complete({"messages": ASK}))["content"] == expected
            models = await stub_get(url, "models")
            assert [m["id"] for m in models["data"]] == ["tiny"]


def test_the_stub_refuses_a_host_that_is_not_loopback(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        StubServer({"replies": []}, host="0.0.0.0")
    path = tmp_path / "script.json"
    path.write_text('{"replies": []}', "utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "aetheris.llm.stub", "--script", str(path), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "refusing to listen on '0.0.0.0'" in done.stderr
    assert done.stdout == ""
