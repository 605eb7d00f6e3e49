"""Incoming webhooks over HTTP, in-process: signed requests become keyed signals; every
refusal (unknown hook, signature, body, key, size) is the one error body."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from aetheris import App, Context
from aetheris.api import create_api
from aetheris.journal import canonical, sha256_hex
from aetheris.signing import headers as signed
from aetheris.testing import running_worker
from tests.api.conftest import HOOK_SECRET, build_app


def hook_app() -> App:
    app = build_app()

    @app.agent
    async def order(ctx: Context, order_id: str) -> Any:
        return await ctx.wait_for_signal("paid", key=order_id, timeout=30)

    return app


@pytest.fixture
async def app() -> AsyncIterator[App]:
    app = hook_app()
    yield app
    await app.close()


@pytest.fixture
async def client(app: App) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(create_api(app, poll_interval=0.02))
    async with httpx.AsyncClient(transport=transport, base_url="http://aetheris") as client:
        yield client


def paid(order_id: Any, amount: int = 10, event: str | None = None) -> dict[str, Any]:
    return {
        "id": event or f"evt_{order_id}_{amount}",
        "data": {"order_id": order_id, "amount": amount},
    }


async def post(
    client: httpx.AsyncClient,
    body: Any,
    *,
    name: str = "paid",
    secret: str = HOOK_SECRET,
    at: float | None = None,
    extra: dict[str, str] | None = None,
) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {**signed(secret, raw, time.time() if at is None else at), **(extra or {})}
    headers["Content-Type"] = "application/json"
    return await client.post(f"/v1/hooks/{name}", content=raw, headers=headers)


def refused(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"} and error["code"] == code
    message: str = error["message"]
    return message


async def test_a_signed_request_wakes_the_job_waiting_on_its_key(
    app: App, client: httpx.AsyncClient
) -> None:
    handle = await app.start("order", {"order_id": "o-1"}, tenant="acme")
    async with running_worker(app, poll_interval=0.01):
        await until(app, handle.job_id, "parked")
        answer = await post(client, paid("o-1", 42, event="evt_1"))  # no API key: signed
        assert answer.status_code == 202, answer.text
        assert answer.json() == {
            "signal_id": "sha256:" + sha256_hex(canonical(paid("o-1", 42, event="evt_1"))),
            "delivered_to": handle.job_id,
            "created": True,
        }
        assert await handle.result(timeout=10) == paid("o-1", 42, event="evt_1")


async def test_a_request_before_any_job_waits_is_kept_for_it(
    app: App, client: httpx.AsyncClient
) -> None:
    first = await post(client, paid(7, 5), extra={"Idempotency-Key": "evt-7"})
    assert first.status_code == 202
    assert first.json() == {"signal_id": "evt-7", "delivered_to": None, "created": True}
    retried = await post(client, paid(7, 5), extra={"Idempotency-Key": "evt-7"})
    assert retried.json() == {"signal_id": "evt-7", "delivered_to": None, "created": False}
    handle = await app.start("order", {"order_id": "7"}, tenant="acme")  # an integer key: "7"
    async with running_worker(app, poll_interval=0.01):
        assert await handle.result(timeout=10) == paid(7, 5)
    again = await post(client, paid(7, 5), extra={"Idempotency-Key": "evt-7"})
    assert again.json() == {"signal_id": "evt-7", "delivered_to": handle.job_id, "created": False}


async def test_the_event_id_header_names_the_signal(client: httpx.AsyncClient) -> None:
    answer = await post(client, paid("o-2"), extra={"Aetheris-Event-Id": "evt_9"})
    assert answer.json()["signal_id"] == "evt_9"
    both = await post(client, paid("o-2"), extra={"Idempotency-Key": "k", "Aetheris-Event-Id": "e"})
    assert both.json()["signal_id"] == "k"


async def test_a_hook_of_another_tenant_reaches_no_job_of_this_one(
    app: App, client: httpx.AsyncClient
) -> None:
    handle = await app.start("order", {"order_id": "o-3"}, tenant="beta")  # paid is acme's
    async with running_worker(app, poll_interval=0.01):
        await until(app, handle.job_id, "parked")
        answer = await post(client, paid("o-3"))
        assert answer.json()["delivered_to"] is None
        assert (await app.get_job(handle.job_id)).status.value == "parked"


@pytest.mark.parametrize(
    ("secret", "skew", "problem"),
    [
        ("whsec_other", None, "does not match"),
        (HOOK_SECRET, -3600.0, "away from the server's clock"),
        (HOOK_SECRET, 3600.0, "away from the server's clock"),
    ],
)
async def test_a_bad_signature_is_401_and_delivers_nothing(
    app: App, client: httpx.AsyncClient, secret: str, skew: float | None, problem: str
) -> None:
    at = None if skew is None else time.time() + skew  # at run time: ids stable across workers
    answer = await post(client, paid("o-4"), secret=secret, at=at)
    assert problem in refused(answer, 401, "invalid_signature")
    assert "www-authenticate" not in answer.headers
    assert await (await app.open_store()).key_holder("acme", "paid", "o-4") is None
    answer = await post(client, paid("o-4"))
    assert answer.json()["created"], "the refused request left nothing behind"


async def test_a_request_without_signature_headers_is_401(client: httpx.AsyncClient) -> None:
    raw = json.dumps(paid("o-5")).encode()
    answer = await client.post("/v1/hooks/paid", content=raw)
    assert "Aetheris-Timestamp" in refused(answer, 401, "invalid_signature")
    answer = await client.post("/v1/hooks/paid", content=raw, headers={"Aetheris-Timestamp": "1"})
    assert "Aetheris-Signature" in refused(answer, 401, "invalid_signature")
    bad_time = {"Aetheris-Timestamp": "soon", "Aetheris-Signature": "v1=00"}
    answer = await client.post("/v1/hooks/paid", content=raw, headers=bad_time)
    assert "not a Unix time" in refused(answer, 401, "invalid_signature")


async def test_an_unknown_hook_is_404(client: httpx.AsyncClient) -> None:
    assert "'nope'" in refused(await post(client, paid("o-6"), name="nope"), 404, "not_found")


async def test_bad_bodies_are_refused_naming_the_problem(client: httpx.AsyncClient) -> None:
    refused(await post(client, b"{not json"), 400, "bad_request")
    refused(await post(client, b'{"data": {"order_id": NaN}}'), 400, "bad_request")
    message = refused(await post(client, {"data": {}}), 422, "invalid_input")
    assert "/data/order_id" in message
    message = refused(await post(client, {"data": {"order_id": True}}), 422, "invalid_input")
    assert "/data/order_id" in message and "True" in message
    refused(await post(client, {"data": {"order_id": ""}}), 422, "invalid_input")
    refused(await post(client, [1, 2]), 422, "invalid_input")
    nul = {"data": {"order_id": "o-7", "note": "\u0000"}}
    refused(await post(client, nul), 422, "invalid_input")


async def test_a_body_over_the_limit_is_413(app: App, client: httpx.AsyncClient) -> None:
    big = json.dumps({"data": {"order_id": "o-8", "pad": "x" * (app.max_payload_bytes + 70_000)}})
    refused(await post(client, big.encode()), 413, "payload_too_large")


async def test_an_insecure_hook_takes_unsigned_requests_keyed_by_its_function(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.post(
        "/v1/hooks/ticket", json={"state": "closed"}, headers={"X-Ticket": "T-1"}
    )
    assert answer.status_code == 202 and answer.json()["delivered_to"] is None
    answer = await client.post("/v1/hooks/ticket", json={"state": "closed"})
    message = refused(answer, 422, "invalid_input")
    assert "key function raised KeyError" in message


async def test_a_hook_whose_secret_is_not_in_the_environment_is_503(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = App("memory://")
    app.hook("paid", key="/id", secret_env="AETHERIS_TEST_HOOK_SECRET")
    monkeypatch.delenv("AETHERIS_TEST_HOOK_SECRET", raising=False)
    transport = httpx.ASGITransport(create_api(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://aetheris") as client:
        refused(await post(client, {"id": "a"}, secret="s"), 503, "unavailable")
        monkeypatch.setenv("AETHERIS_TEST_HOOK_SECRET", "s")
        assert (await post(client, {"id": "a"}, secret="s")).status_code == 202


async def until(app: App, job_id: str, status: str, timeout: float = 10) -> None:
    """Poll the job (as a client would) until it has ``status``."""
    deadline = time.monotonic() + timeout
    while (await app.get_job(job_id)).status.value != status:
        assert time.monotonic() < deadline, f"job {job_id} never became {status}"
        await asyncio.sleep(0.01)


def nested(levels: int) -> bytes:
    """A body with its key, and arrays nested ``levels`` deep (2 levels more in all)."""
    return ('{"data": {"order_id": "o", "deep": ' + "[" * levels + "]" * levels + "}}").encode()


@pytest.mark.parametrize(("levels", "status"), [(62, 202), (63, 422), (500, 422), (5000, 422)])
async def test_a_body_nested_too_deep_is_422(
    client: httpx.AsyncClient, levels: int, status: int
) -> None:
    answer = await post(client, nested(levels))
    assert answer.status_code == status, answer.text
    if status == 422:
        assert "nests over 64 levels" in refused(answer, 422, "invalid_input")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
BODIES = st.one_of(
    st.binary(max_size=300),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.builds(lambda i: json.dumps({"data": {"order_id": i}}).encode(), JSON),
    st.integers(1, 3000).map(nested),
)
HEADER = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)


@settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    name=st.sampled_from(["paid", "ticket", "nope"]),
    body=BODIES,
    sign=st.booleans(),
    timestamp=st.none() | HEADER,
    signature=st.none() | HEADER,
    event_id=st.none() | HEADER,
    ticket=st.none() | HEADER,
)
def test_no_hook_request_makes_a_server_error(
    name: str,
    body: bytes,
    sign: bool,
    timestamp: str | None,
    signature: str | None,
    event_id: str | None,
    ticket: str | None,
) -> None:
    """Whatever the body and the headers, signed or not: a 202 or the one error body."""
    headers = signed(HOOK_SECRET, body, time.time()) if sign else {}
    optional = {
        "Aetheris-Timestamp": timestamp,
        "Aetheris-Signature": signature,
        "Aetheris-Event-Id": event_id,
        "X-Ticket": ticket,
    }
    headers.update({k: v for k, v in optional.items() if v is not None and k not in headers})
    response = FUZZED.post(f"/v1/hooks/{name}", content=body, headers=headers)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"code", "message", "details"}
    else:
        assert response.status_code == 202


FUZZED = TestClient(create_api(hook_app()))
