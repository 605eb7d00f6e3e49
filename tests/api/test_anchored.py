"""A server with a signing key: its writes are anchored, its verifications trust its key, its
bundles are signed, and the public key it signs with is recorded."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest

from aetheris.anchor import SigningKey, TrustedKeys
from aetheris.api import create_api
from aetheris.bundle import verify_bundle
from aetheris.keys import create_key
from aetheris.testing import running_worker
from tests.api.conftest import Api, build_app
from tests.api.test_api import until_status

SEED = base64.b64encode(bytes(range(1, 33))).decode()
KEY = SigningKey.from_seed(SEED)


@pytest.fixture
async def signed(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    monkeypatch.setenv("AETHERIS_SIGNING_KEY", SEED)
    app = build_app()
    assert app.signing_key is not None
    assert app.signing_key.key_id == KEY.key_id
    _, token = await create_key(await app.open_store(), "admin", "acme")
    transport = httpx.ASGITransport(create_api(app, poll_interval=0.02))
    async with httpx.AsyncClient(transport=transport, base_url="http://aetheris") as client:
        yield Api(app, client, {("acme", "admin"): token})
    await app.close()


async def test_a_server_with_a_key_anchors_verifies_and_signs(signed: Api) -> None:
    job_id = await signed.start("quick", {"n": 2})
    async with running_worker(signed.app):
        await until_status(signed, job_id, "succeeded")
    url = f"/v1/jobs/{job_id}"
    verified = (await signed.client.get(f"{url}/verify", headers=signed.auth())).json()
    assert verified["ok"] and verified["anchored"], verified
    assert verified["key_id"] == KEY.key_id
    assert verified["note"] is None and verified["check"] is None
    bundle = (await signed.client.get(f"{url}/export", headers=signed.auth())).json()
    assert bundle["signature"]["key_id"] == KEY.key_id
    assert verify_bundle(bundle, TrustedKeys.of([KEY.public])).signed_by == KEY.key_id
    recorded = await (await signed.app.open_store()).signing_keys()
    assert [(k.key_id, k.public_key) for k in recorded] == [(KEY.key_id, KEY.public.text)]
