"""Every role × every endpoint × its own tenant and another: what each may do, and that
another tenant's job is a 404 (never a 403 that would tell it exists)."""

from __future__ import annotations

from typing import Any

import pytest

from aetheris.webhooks import create_webhook
from tests.api.conftest import ROLES, Api

READ, START, CONTROL, SIGNAL, DECIDE, RESOLVE, BUDGET, WEBHOOKS = (
    "read", "start", "control", "signal", "decide", "resolve", "budget", "webhooks",
)  # fmt: skip
ALLOWED = {
    "admin": {READ, START, CONTROL, SIGNAL, DECIDE, RESOLVE, BUDGET, WEBHOOKS},
    "operator": {READ, START, CONTROL, SIGNAL, RESOLVE, BUDGET},
    "approver": {READ, DECIDE},
    "viewer": {READ},
}
# (method, path, body, action); {job} is a job of the tenant "acme".
JOB_ENDPOINTS: list[tuple[str, str, Any, str]] = [
    ("GET", "/v1/jobs/{job}", None, READ),
    ("GET", "/v1/jobs/{job}/events", None, READ),
    ("GET", "/v1/jobs/{job}/verify", None, READ),
    ("GET", "/v1/jobs/{job}/export", None, READ),
    ("GET", "/v1/jobs/{job}/timeline", None, READ),
    ("GET", "/v1/jobs/{job}/model-calls", None, READ),
    ("POST", "/v1/jobs/{job}/replay", None, READ),
    ("GET", "/v1/jobs/{job}/diff/{job}", None, READ),
    ("POST", "/v1/jobs/{job}/pause", None, CONTROL),
    ("POST", "/v1/jobs/{job}/resume", None, CONTROL),
    ("POST", "/v1/jobs/{job}/signals/ping", {"data": 1}, SIGNAL),
    ("POST", "/v1/jobs/{job}/approve", {}, DECIDE),
    ("POST", "/v1/jobs/{job}/reject", {"comment": "no"}, DECIDE),
    ("POST", "/v1/jobs/{job}/effects/3/resolve", {"outcome": "not_executed"}, RESOLVE),
    ("POST", "/v1/jobs/{job}/budget", {"tokens": 10}, BUDGET),
    ("POST", "/v1/jobs/{job}/fork", {"at": 0}, START),
    ("POST", "/v1/jobs/{job}/cancel", None, CONTROL),
]
COLLECTION_ENDPOINTS: list[tuple[str, str, Any, str]] = [
    ("GET", "/v1/jobs", None, READ),
    ("GET", "/v1/job-ids?prefix=j", None, READ),
    ("GET", "/v1/summary", None, READ),
    ("GET", "/v1/jobs?idempotency_key=k", None, READ),
    ("GET", "/v1/approvals", None, READ),
    ("GET", "/v1/effects?state=in_doubt", None, READ),
    ("GET", "/v1/agents", None, READ),
    ("GET", "/v1/tools", None, READ),
    ("POST", "/v1/jobs", {"agent": "waiter", "input": {}}, START),
    ("GET", "/v1/webhooks", None, WEBHOOKS),
    ("GET", "/v1/webhooks/deliveries", None, WEBHOOKS),
    ("POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/h", "events": ["job.failed"]}, WEBHOOKS),
]
# {hook} is a webhook subscription of the tenant "acme".
WEBHOOK_ENDPOINTS: list[tuple[str, str, Any, str]] = [
    ("GET", "/v1/webhooks/{hook}/deliveries", None, WEBHOOKS),
    ("DELETE", "/v1/webhooks/{hook}", None, WEBHOOKS),
]


async def call(api: Api, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    return await api.client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "body", "action"), JOB_ENDPOINTS)
async def test_job_endpoints(
    api: Api, role: str, method: str, path: str, body: Any, action: str
) -> None:
    job = await api.start("waiter")
    url = path.format(job=job)
    own = await call(api, method, url, body, api.auth(role, "acme"))
    other = await call(api, method, url, body, api.auth(role, "beta"))
    if action in ALLOWED[role]:
        # Past auth: the action itself answers (done, or a 409/422 for its precondition).
        assert own.status_code not in (401, 403, 404), (role, url, own.text)
        assert other.status_code == 404, (role, url, other.text)
        assert other.json()["error"]["code"] == "not_found"
        # Word for word what a job that does not exist gets.
        missing = await call(api, method, url.replace(job, "nope"), body, api.auth(role, "beta"))
        assert missing.status_code == 404
        assert (
            missing.json()["error"]["message"].replace("nope", job)
            == (other.json()["error"]["message"])
        )
    else:
        assert own.status_code == 403, (role, url, own.text)
        assert other.status_code == 403, (role, url, other.text)  # nothing told about the job
        assert own.json()["error"]["code"] == "forbidden"
    anonymous = await call(api, method, url, body, {})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "body", "action"), WEBHOOK_ENDPOINTS)
async def test_webhook_endpoints(
    api: Api, role: str, method: str, path: str, body: Any, action: str
) -> None:
    store = await api.app.open_store()
    hook = await create_webhook(store, "acme", "http://127.0.0.1:9/h", ["job.completed"])
    url = path.format(hook=hook.id)
    own = await call(api, method, url, body, api.auth(role, "acme"))
    other = await call(api, method, url, body, api.auth(role, "beta"))
    if action in ALLOWED[role]:
        assert own.status_code == 200, (role, url, own.text)
        assert other.status_code == 404, (role, url, other.text)
        missing = await call(api, method, url.replace(hook.id, "wh_nope"), body, api.auth(role))
        assert (
            missing.json()["error"]["message"].replace("wh_nope", hook.id)
            == (other.json()["error"]["message"])
        )
    else:
        assert own.status_code == 403, (role, url, own.text)
        assert other.status_code == 403, (role, url, other.text)
    assert (await call(api, method, url, body, {})).status_code == 401
    assert (await store.webhook(hook.id)) is not None


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "body", "action"), COLLECTION_ENDPOINTS)
async def test_collection_endpoints(
    api: Api, role: str, method: str, path: str, body: Any, action: str
) -> None:
    await api.start("waiter", tenant="beta")
    answer = await call(api, method, path, body, api.auth(role, "acme"))
    if action in ALLOWED[role]:
        assert answer.status_code in (200, 201), (role, path, answer.text)
    else:
        assert answer.status_code == 403, (role, path, answer.text)
    assert (await call(api, method, path, body, {})).status_code == 401


async def test_a_listing_shows_only_the_keys_tenant(api: Api) -> None:
    mine = await api.start("waiter", tenant="acme")
    theirs = await api.start("waiter", tenant="beta")
    for role in ROLES:
        listed = (await api.client.get("/v1/jobs", headers=api.auth(role, "acme"))).json()
        assert [j["id"] for j in listed["jobs"]] == [mine]
    beta = (await api.client.get("/v1/jobs", headers=api.auth("viewer", "beta"))).json()
    assert [j["id"] for j in beta["jobs"]] == [theirs]
    started = await api.client.get(f"/v1/jobs/{theirs}", headers=api.auth("viewer", "beta"))
    assert started.json()["tenant"] == "beta"
    summary = (await api.client.get("/v1/summary", headers=api.auth("viewer", "acme"))).json()
    assert sum(summary["jobs"].values()) == 1  # counts too are the tenant's
    for tenant, job in (("acme", mine), ("beta", theirs)):  # the start of an id, too
        found = await api.client.get(
            "/v1/job-ids", params={"prefix": job[:6]}, headers=api.auth("viewer", tenant)
        )
        assert found.json()["ids"] == [job]


async def test_bad_revoked_and_malformed_keys_are_401(api: Api) -> None:
    store = await api.app.open_store()
    token = api.tokens[("acme", "admin")]
    key_id = token.split("_")[1]
    for header in (
        "Bearer nope",
        "Bearer " + token[:-1] + ("A" if token[-1] != "A" else "B"),
        "Basic " + token,
        "Bearer",
        "Bearer ak_0123456789abcdef_x",
    ):
        answer = await api.client.get("/v1/jobs", headers={"Authorization": header})
        assert answer.status_code == 401, header
        assert answer.headers["www-authenticate"] == "Bearer"
    assert (await api.client.get("/v1/jobs", headers=api.auth())).status_code == 200
    await store.revoke_api_key(key_id)
    assert (await api.client.get("/v1/jobs", headers=api.auth())).status_code == 401
