"""The HTTP API in-process: jobs, pages, events and their stream, control, signals,
approvals, in-doubt effects, budgets, verification and export, and what it refuses."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from aetheris.api import create_api
from aetheris.api.bodies import MAX_DEPTH
from aetheris.journal import EventType
from aetheris.store.port import ClaimFilter
from aetheris.testing import running_worker, simulate_crash
from tests.api.conftest import Api


async def until_status(api: Api, job_id: str, *statuses: str, timeout: float = 10) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        job = (await api.client.get(f"/v1/jobs/{job_id}", headers=api.auth())).json()
        if job["status"] in statuses:
            return job
        assert loop.time() < deadline, job
        await asyncio.sleep(0.02)


def sse(text: str) -> list[dict[str, str]]:
    frames = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            if name and not line.startswith(":"):
                fields[name] = value
        if "event" in fields:
            frames.append(fields)
    return frames


async def test_same_idempotency_key_gives_one_job_even_under_concurrent_requests(
    api: Api,
) -> None:
    body = {"agent": "waiter", "input": {"label": "x"}}
    headers = {**api.auth(), "Idempotency-Key": "order-1"}
    answers = await asyncio.gather(
        *(api.client.post("/v1/jobs", json=body, headers=headers) for _ in range(20))
    )
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 1
    assert sorted(a.status_code for a in answers) == [200] * 19 + [201]
    # Per tenant: the same key in another tenant is another job.
    beta = {**api.auth("operator", "beta"), "Idempotency-Key": "order-1"}
    other = await api.client.post("/v1/jobs", json=body, headers=beta)
    assert other.status_code == 201 and other.json()["id"] not in ids
    clash = await api.client.post(
        "/v1/jobs", json={"agent": "waiter", "input": {"label": "y"}}, headers=headers
    )
    assert clash.status_code == 409
    assert clash.json()["error"]["code"] == "idempotency_conflict"


async def test_jobs_list_filters_and_pages(api: Api) -> None:
    started = [await api.start("waiter", {"label": str(i)}) for i in range(5)]
    quick = await api.start("quick")
    headers = api.auth("viewer")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "agent": "waiter"}
        if cursor:
            params["cursor"] = cursor
        page = (await api.client.get("/v1/jobs", params=params, headers=headers)).json()
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == started[::-1]
    pending = await api.client.get("/v1/jobs", params={"status": "pending"}, headers=headers)
    assert {j["id"] for j in pending.json()["jobs"]} == {*started, quick}
    paused = await api.client.post(f"/v1/jobs/{started[0]}/pause", headers=api.auth("operator"))
    assert paused.json()["park_reason"] == "paused"
    by_reason = await api.client.get("/v1/jobs", params={"park_reason": "paused"}, headers=headers)
    assert [j["id"] for j in by_reason.json()["jobs"]] == [started[0]]
    before = await api.client.get(
        "/v1/jobs", params={"created_before": "2000-01-01T00:00:00Z"}, headers=headers
    )
    assert before.json()["jobs"] == []
    bad = await api.client.get("/v1/jobs", params={"cursor": "!!"}, headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"


async def test_a_job_runs_to_its_end_and_its_journal_streams_and_resumes(api: Api) -> None:
    job_id = await api.start("waiter", {"label": "a"})
    async with running_worker(api.app):
        await until_status(api, job_id, "parked")
        sent = await api.client.post(
            f"/v1/jobs/{job_id}/signals/go",
            json={"data": {"ok": True}, "signal_id": "s1"},
            headers=api.auth("operator"),
        )
        assert sent.status_code == 200 and sent.json()["created"] is True
        again = await api.client.post(
            f"/v1/jobs/{job_id}/signals/go", json={"signal_id": "s1"}, headers=api.auth()
        )
        assert again.json()["created"] is False and again.json()["seq"] == sent.json()["seq"]
        job = await until_status(api, job_id, "succeeded")
    assert job["result"] == {"label": "a", "got": {"ok": True}}
    events = (await api.client.get(f"/v1/jobs/{job_id}/events", headers=api.auth())).json()
    seqs = [e["seq"] for e in events["events"]]
    assert seqs == list(range(len(seqs))) and events["next_after"] is None
    page = await api.client.get(
        f"/v1/jobs/{job_id}/events", params={"after": 1, "limit": 2}, headers=api.auth()
    )
    assert [e["seq"] for e in page.json()["events"]] == [2, 3]
    assert page.json()["next_after"] == 3
    whole = await api.client.get(f"/v1/jobs/{job_id}/events/stream", headers=api.auth())
    assert whole.headers["content-type"].startswith("text/event-stream")
    frames = sse(whole.text)
    assert [int(f["id"]) for f in frames if "id" in f] == seqs
    assert frames[-1]["event"] == "end" and json.loads(frames[-1]["data"])["status"] == "succeeded"
    resumed = await api.client.get(
        f"/v1/jobs/{job_id}/events/stream", headers={**api.auth(), "Last-Event-ID": "2"}
    )
    assert [int(f["id"]) for f in sse(resumed.text) if "id" in f] == seqs[3:]
    key_id = api.tokens[("acme", "operator")].split("_")[1]
    senders = [json.dumps(e["data"]) for e in events["events"] if e["type"] == EventType.OP]
    assert any(f"key:{key_id} (operator)" in text for text in senders)
    bad = await api.client.get(
        f"/v1/jobs/{job_id}/events/stream", headers={**api.auth(), "Last-Event-ID": "x"}
    )
    assert bad.status_code == 400


async def test_control_is_journaled_with_the_acting_key(api: Api) -> None:
    job_id = await api.start("waiter")
    key_id = api.tokens[("acme", "operator")].split("_")[1]
    headers = api.auth("operator")
    assert (await api.client.post(f"/v1/jobs/{job_id}/pause", headers=headers)).status_code == 200
    assert (await api.client.post(f"/v1/jobs/{job_id}/resume", headers=headers)).status_code == 200
    cancelled = await api.client.post(f"/v1/jobs/{job_id}/cancel", headers=headers)
    assert cancelled.json()["status"] == "cancelled"
    again = await api.client.post(f"/v1/jobs/{job_id}/cancel", headers=headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    events = (await api.client.get(f"/v1/jobs/{job_id}/events", headers=headers)).json()
    actors = [e["data"].get("by") for e in events["events"][1:]]
    assert actors == [f"key:{key_id} (operator)"] * 3


async def test_an_approval_is_listed_with_what_to_approve_and_decided(api: Api) -> None:
    job_id = await api.start("guarded", {"amount": 7})
    other = await api.start("guarded", {"amount": 8}, tenant="beta")
    async with running_worker(api.app):
        await until_status(api, job_id, "parked")
        listed = (await api.client.get("/v1/approvals", headers=api.auth("approver"))).json()
        assert [a["job_id"] for a in listed] == [job_id]
        [request] = listed
        assert request["name"] == "tool:pay" and request["args_hash"]
        assert request["request"]["position"] == request["position"]
        wrong = await api.client.post(
            f"/v1/jobs/{job_id}/approve", json={"args_hash": "0" * 64}, headers=api.auth("approver")
        )
        assert wrong.status_code == 409
        hidden = await api.client.post(
            f"/v1/jobs/{other}/approve", json={}, headers=api.auth("approver")
        )
        assert hidden.status_code == 404
        decided = await api.client.post(
            f"/v1/jobs/{job_id}/approve",
            json={"args_hash": request["args_hash"], "comment": "fine"},
            headers=api.auth("approver"),
        )
        assert decided.status_code == 200, decided.text
        job = await until_status(api, job_id, "succeeded")
    assert job["result"] == "paid 7"
    key_id = api.tokens[("acme", "approver")].split("_")[1]
    signal = decided.json()
    assert signal["sender"] == f"key:{key_id} (approver)"


async def test_an_in_doubt_effect_is_listed_for_its_tenant_and_resolved(api: Api) -> None:
    job_id = await api.start("refund", {"amount": 3})
    store = await api.app.open_store()
    with simulate_crash("after_intent:charge"):
        async with running_worker(api.app):  # dies once the intent is written
            for _ in range(1000):
                if await store.effects(job_id=job_id):
                    break
                await asyncio.sleep(0.01)
    async with running_worker(api.app):
        job = await until_status(api, job_id, "parked")
    assert job["park_reason"] == "effect_in_doubt"
    mine = (await api.client.get("/v1/effects?state=in_doubt", headers=api.auth("viewer"))).json()
    assert [(e["job_id"], e["tool"]) for e in mine] == [(job_id, "charge")]
    theirs = await api.client.get("/v1/effects?state=in_doubt", headers=api.auth("viewer", "beta"))
    assert theirs.json() == []
    position = mine[0]["position"]
    resolved = await api.client.post(
        f"/v1/jobs/{job_id}/effects/{position}/resolve",
        json={"outcome": "committed", "result": "charged elsewhere"},
        headers=api.auth("operator"),
    )
    assert resolved.status_code == 200, resolved.text
    async with running_worker(api.app):
        done = await until_status(api, job_id, "succeeded")
    assert done["result"] == "charged elsewhere"
    twice = await api.client.post(
        f"/v1/jobs/{job_id}/effects/{position}/resolve",
        json={"outcome": "not_executed"},
        headers=api.auth("operator"),
    )
    assert twice.status_code == 409


async def test_verify_export_agents_tools_and_health(api: Api) -> None:
    job_id = await api.start("quick", {"n": 2})
    async with running_worker(api.app):
        await until_status(api, job_id, "succeeded")
    verified = (await api.client.get(f"/v1/jobs/{job_id}/verify", headers=api.auth())).json()
    assert verified["ok"] is True and verified["events"] > 2
    # This server has no signing key and trusts none: it says so, and claims only the chain.
    assert verified["anchored"] is False and "no trusted public key" in verified["note"]
    bundle = (await api.client.get(f"/v1/jobs/{job_id}/export", headers=api.auth())).json()
    assert bundle["job"]["id"] == job_id
    agents = (await api.client.get("/v1/agents", headers=api.auth())).json()
    assert {a["name"] for a in agents} == {"waiter", "guarded", "refund", "busy", "quick"}
    tools = (await api.client.get("/v1/tools", headers=api.auth())).json()
    assert {t["name"]: t["effect"] for t in tools} == {
        "pay": "at_most_once",
        "charge": "at_most_once",
    }
    assert (await api.client.get("/healthz")).json() == {"status": "ok", "detail": None}
    assert (await api.client.get("/readyz")).status_code == 200


async def test_budget_is_raised_through_the_api(api: Api) -> None:
    job_id = await api.start("waiter")
    raised = await api.client.post(
        f"/v1/jobs/{job_id}/budget", json={"tokens": 1000}, headers=api.auth("operator")
    )
    assert raised.status_code == 200 and raised.json()["name"] == "aetheris.budget"
    empty = await api.client.post(f"/v1/jobs/{job_id}/budget", json={}, headers=api.auth())
    assert empty.status_code == 422


async def test_bad_input_gets_one_error_body_and_the_right_status(api: Api) -> None:
    h = {**api.auth(), "content-type": "application/json"}
    cases = [
        (b"{not json", 400, "bad_request"),
        (b'{"agent": "waiter", "input": []}', 422, "invalid_input"),
        (b'{"agent": "waiter", "input": {}, "extra": 1}', 422, "invalid_input"),
        (b'{"agent": "nobody", "input": {}}', 422, "unknown_agent"),
        (b'{"agent": "quick", "input": {"n": "many"}}', 422, "invalid_input"),
        (b'{"agent": "waiter", "input": {"label": "\\ud800"}}', 422, "invalid_input"),
        (b'{"agent": "waiter", "input": {"label": "a\\u0000b"}}', 422, "invalid_input"),
    ]
    for body, status, code in cases:
        answer = await api.client.post("/v1/jobs", content=body, headers=h)
        assert answer.status_code == status, (body, answer.text)
        error = answer.json()["error"]
        assert error["code"] == code and error["message"] and "details" in error, body
        assert "Traceback" not in answer.text
    missing = await api.client.get("/v1/nothing-here", headers=api.auth())
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    method = await api.client.delete("/v1/jobs", headers=api.auth())
    assert method.status_code == 405 and method.json()["error"]["code"] == "method_not_allowed"


async def test_a_body_over_the_limit_is_413_before_it_is_read(api: Api) -> None:
    api.app.max_payload_bytes = 1000
    small = create_api(api.app)
    transport = httpx.ASGITransport(small)
    async with httpx.AsyncClient(transport=transport, base_url="http://a") as client:
        big = {"agent": "waiter", "input": {"label": "x" * 200_000}}
        answer = await client.post("/v1/jobs", json=big, headers=api.auth())
        assert answer.status_code == 413
        assert answer.json()["error"]["code"] == "payload_too_large"

        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(100):
                yield b" " * 10_000

        streamed = await client.post(
            "/v1/jobs",
            content=chunks(),
            headers={**api.auth(), "content-type": "application/json"},
        )
        assert streamed.status_code == 413
        over_payload = {"agent": "waiter", "input": {"label": "x" * 5_000}}
        answer = await client.post("/v1/jobs", json=over_payload, headers=api.auth())
        assert answer.status_code == 422  # under the body limit, over the App's payload limit


@pytest.mark.parametrize("levels", [63, 64, 300, 5000])
async def test_a_body_that_nests_too_deep_is_422_on_every_route(api: Api, levels: int) -> None:
    job_id = await api.start("waiter")
    routes = [  # (path, body, levels of the body around the value)
        ("/v1/jobs", '{"agent": "waiter", "input": {"label": %s}}', 2),
        (f"/v1/jobs/{job_id}/signals/go", '{"data": %s}', 1),
        (f"/v1/jobs/{job_id}/approve", '{"comment": %s}', 1),
    ]
    for path, body, around in routes:
        inner = levels - around
        answer = await api.client.post(
            path,
            content=body % ("[" * inner + "]" * inner),
            headers={**api.auth(), "content-type": "application/json"},
        )
        if levels > MAX_DEPTH:
            assert answer.status_code == 422, (path, answer.text)
            assert "nests over 64 levels" in answer.json()["error"]["message"]
        else:
            assert answer.status_code < 500, (path, answer.text)
    assert (await api.app.get_job(job_id)).status.value == "pending"  # nothing was sent


async def test_the_worker_holding_a_job_is_shown_to_admins_only(api: Api) -> None:
    job_id = await api.start("waiter")
    store = await api.app.open_store()
    claim = await store.claim("host-7:4242", 30.0, ClaimFilter(["waiter"]))
    assert claim is not None and claim.job.id == job_id
    for role in ("operator", "approver", "viewer"):
        seen = (await api.client.get(f"/v1/jobs/{job_id}", headers=api.auth(role))).json()
        assert seen["status"] == "running" and seen["lease_owner"] is None, role
        listed = (await api.client.get("/v1/jobs", headers=api.auth(role))).json()
        assert [j["lease_owner"] for j in listed["jobs"]] == [None], role
    admin = (await api.client.get(f"/v1/jobs/{job_id}", headers=api.auth("admin"))).json()
    assert admin["lease_owner"] == "host-7:4242"


async def test_who_paused_or_cancelled_a_running_job_is_in_the_entry_that_honours_it(
    api: Api,
) -> None:
    job_id = await api.start("busy")
    operator = f"key:{api.tokens[('acme', 'operator')].split('_')[1]} (operator)"
    admin = f"key:{api.tokens[('acme', 'admin')].split('_')[1]} (admin)"
    async with running_worker(api.app):
        await until_status(api, job_id, "running")
        paused = await api.client.post(f"/v1/jobs/{job_id}/pause", headers=api.auth("operator"))
        assert paused.json()["status"] == "running"  # only flagged: its worker parks it
        await until_status(api, job_id, "parked")
        await api.client.post(f"/v1/jobs/{job_id}/resume", headers=api.auth("admin"))
        await until_status(api, job_id, "running")
        await api.client.post(f"/v1/jobs/{job_id}/cancel", headers=api.auth("operator"))
        job = await until_status(api, job_id, "cancelled")
    assert job["control"] is None
    events = (await api.client.get(f"/v1/jobs/{job_id}/events", headers=api.auth())).json()
    by_type = {e["type"]: e["data"] for e in events["events"]}
    assert by_type["job_parked"]["reason"] == "paused"
    assert by_type["job_parked"]["by"] == operator
    assert by_type["job_resumed"]["by"] == admin
    assert by_type["job_cancelled"]["by"] == operator


async def test_a_job_is_forked_through_the_api(api: Api) -> None:
    job_id = await api.start("quick", {"n": 4})
    async with running_worker(api.app):
        await until_status(api, job_id, "succeeded")
        headers = api.auth("operator")
        again = await api.client.post(f"/v1/jobs/{job_id}/fork", json={"at": 0}, headers=headers)
        assert again.status_code == 201, again.text
        edited = await api.client.post(
            f"/v1/jobs/{job_id}/fork", json={"at": 0, "output": 50}, headers=headers
        )
        assert edited.status_code == 201, edited.text
        done = await until_status(api, edited.json()["id"], "succeeded")
        assert done["result"] == 50  # the step's edited output is the job's result
        assert (await until_status(api, again.json()["id"], "succeeded"))["result"] == 8
    # Where the edited fork and its origin differ: the step's output, then the end.
    diff = await api.client.get(f"/v1/jobs/{job_id}/diff/{edited.json()['id']}", headers=headers)
    found = diff.json()
    assert (found["same"], found["first_divergence"]) == (False, None), found
    assert [(r["position"], r["differs"]) for r in found["rows"]] == [(0, "output")]
    assert found["rows"][0]["a"]["output"] != found["rows"][0]["b"]["output"]
    assert (found["end"]["a"]["result"], found["end"]["b"]["result"]) == (8, 50)
    same = await api.client.get(f"/v1/jobs/{job_id}/diff/{again.json()['id']}", headers=headers)
    assert same.json()["same"] is True
    other = await api.start("quick", {"n": 1}, tenant="beta")
    hidden = await api.client.get(f"/v1/jobs/{job_id}/diff/{other}", headers=headers)
    assert hidden.status_code == 404 and hidden.json()["error"]["details"] == {"job_id": other}
    far = await api.client.post(f"/v1/jobs/{job_id}/fork", json={"at": 99}, headers=headers)
    assert far.status_code in (409, 422) and "range" in far.json()["error"]["message"]
    store = await api.app.open_store()
    running = await api.start("waiter")
    assert await store.claim("w", 30.0, ClaimFilter(["waiter"])) is not None
    busy = await api.client.post(f"/v1/jobs/{running}/fork", json={"at": 0}, headers=headers)
    assert busy.status_code == 409, busy.text
