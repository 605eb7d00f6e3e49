"""The OpenAPI document, fuzzed: whatever schemathesis sends (valid and not), the server
answers without a server error, and every refusal is the one error body. Bounded and
deterministic (derandomized Hypothesis, a fixed number of examples per operation)."""

from __future__ import annotations

import asyncio

import schemathesis
from hypothesis import HealthCheck, settings

from aetheris.api import create_api
from aetheris.keys import create_key
from tests.api.conftest import build_app

APP = build_app()


async def _admin_key() -> str:
    _, token = await create_key(await APP.open_store(), "admin", "acme")
    return token


TOKEN = asyncio.run(_admin_key())
schema = schemathesis.openapi.from_asgi("/openapi.json", create_api(APP))
# The stream of a job that exists runs until it ends: fuzz the JSON endpoints only.
schema = schema.exclude(path_regex=r"/events/stream$")


@schema.parametrize()
@settings(
    max_examples=5,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_makes_a_server_error(case: schemathesis.Case) -> None:
    for headers in ({"Authorization": f"Bearer {TOKEN}"}, {}):
        response = case.call(headers=headers)
        assert response.status_code < 500, (case.as_curl_command(), response.text)
        if response.status_code >= 400:
            error = response.json()["error"]
            assert set(error) == {"code", "message", "details"}, response.text
