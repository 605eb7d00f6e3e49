"""What the web UI reads besides jobs: the tenant's counts, a job's timeline, its model calls
with their messages read from blobs (each once), a replay check against the server's code,
the search by idempotency key; and the UI's own files."""

from __future__ import annotations

import asyncio
import glob
import re
from pathlib import Path
from typing import Any

import httpx

from aetheris import App, Context
from aetheris.api import create_api
from aetheris.modelcalls import ModelReply, Usage, model_call
from aetheris.testing import running_worker, simulate_crash
from tests.api.conftest import Api
from tests.api.test_api import until_status

UI = Path(__file__).resolve().parents[2] / "src" / "aetheris" / "ui"


async def test_the_summary_counts_the_tenants_jobs_by_status_and_its_effects_in_doubt(
    api: Api,
) -> None:
    first = await api.start("waiter", tenant="acme")
    await api.start("waiter", tenant="acme")
    await api.start("waiter", tenant="beta")
    await api.client.post(f"/v1/jobs/{first}/pause", headers=api.auth("operator"))
    acme = (await api.client.get("/v1/summary", headers=api.auth("viewer"))).json()
    assert acme["jobs"] == {
        "pending": 1,
        "running": 0,
        "parked": 1,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 0,
        "compensated": 0,
    }
    assert acme["in_doubt"] == 0 and acme["oldest_pending_at"] is not None
    beta = (await api.client.get("/v1/summary", headers=api.auth("viewer", "beta"))).json()
    assert (beta["jobs"]["pending"], beta["jobs"]["parked"]) == (1, 0)

    job_id = await api.start("refund", {"amount": 3}, tenant="beta")
    store = await api.app.open_store()
    with simulate_crash("after_intent:charge"):
        async with running_worker(api.app):  # dies once the intent is written
            for _ in range(1000):
                if await store.effects(job_id=job_id):
                    break
                await asyncio.sleep(0.01)
    async with running_worker(api.app):
        for _ in range(1000):
            if (await api.app.get_job(job_id)).status.value == "parked":
                break
            await asyncio.sleep(0.01)
    assert (await api.client.get("/v1/summary", headers=api.auth("viewer", "beta"))).json()[
        "in_doubt"
    ] == 1
    assert (await api.client.get("/v1/summary", headers=api.auth("viewer"))).json()["in_doubt"] == 0


async def test_a_job_is_found_by_its_idempotency_key_in_its_tenant_only(api: Api) -> None:
    made = await api.client.post(
        "/v1/jobs",
        json={"agent": "waiter"},
        headers={**api.auth("operator"), "Idempotency-Key": "order-9"},
    )
    await api.client.post(
        "/v1/jobs",
        json={"agent": "waiter"},
        headers={**api.auth("operator", "beta"), "Idempotency-Key": "order-9"},
    )
    await api.start("waiter")
    found = await api.client.get(
        "/v1/jobs", params={"idempotency_key": "order-9"}, headers=api.auth("viewer")
    )
    assert [j["id"] for j in found.json()["jobs"]] == [made.json()["id"]]
    none = await api.client.get(
        "/v1/jobs", params={"idempotency_key": "order-"}, headers=api.auth("viewer")
    )
    assert none.json()["jobs"] == []


async def test_the_timeline_of_a_job_that_waited_for_a_signal(api: Api) -> None:
    job_id = await api.start("waiter", {"label": "x"})
    async with running_worker(api.app):
        parked = await until_status(api, job_id, "parked")
        line = (await api.client.get(f"/v1/jobs/{job_id}/timeline", headers=api.auth())).json()
        assert line["status"] == "parked" and line["end"] is None
        [wait] = line["steps"]
        assert (wait["kind"], wait["name"], wait["state"], wait["end"]) == (
            "signal",
            "go#1",
            "waiting",
            None,
        )
        assert [p["kind"] for p in line["phases"]] == ["pending", "run", "parked"]
        assert line["phases"][-1]["label"] == "signal" and line["phases"][-1]["end"] is None
        assert line["events"] == parked["events"]
        await api.client.post(f"/v1/jobs/{job_id}/signals/go", json={"data": 1}, headers=api.auth())
        await until_status(api, job_id, "succeeded")
    line = (await api.client.get(f"/v1/jobs/{job_id}/timeline", headers=api.auth())).json()
    [wait] = line["steps"]
    assert (wait["state"], wait["outcome"]) == ("done", "received")
    assert wait["duration"] == wait["end"] - wait["start"] > 0
    assert line["end"] == line["now"] >= wait["end"]
    assert [p["kind"] for p in line["phases"]] == ["pending", "run", "parked", "run"]
    assert line["model_calls"] == {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost": 0.0}


def chat_app(url: str, answer: str) -> App:
    app = App(url, lease_ttl=1.0, poll_interval=0.02)

    async def ask(messages: list[dict[str, Any]], tools: list[str]) -> Any:
        async def call() -> ModelReply:
            reply = {"message": {"role": "assistant", "content": answer}}
            return ModelReply(reply, Usage(30, 7), "m-1")

        request = {"messages": messages, "tools": tools}
        return (await model_call("m-1", request, call, provider="test")).response

    @app.agent
    async def chat(ctx: Context) -> str:
        tools = [f"tool-{i}-" + "x" * 40 for i in range(40)]  # over the inline limit: a blob
        messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
        first = await ask(messages, tools)
        messages += [first["message"], {"role": "user", "content": "and?"}]
        second = await ask(messages, tools)
        return str(second["message"]["content"])

    return app


async def test_model_calls_come_with_their_messages_once_and_their_blobs_read() -> None:
    answer = "long answer " * 200  # over the inline limit: the response is a blob too
    app = chat_app("memory://", answer)
    handle = await app.start("chat", {})
    async with running_worker(app):
        assert await handle.result(timeout=10) == answer
    transport = httpx.ASGITransport(create_api(app, auth=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://a") as client:
        doc = (await client.get(f"/v1/jobs/{handle.job_id}/model-calls")).json()
    first, second = doc["calls"]
    assert (first["model"], first["input_tokens"], first["output_tokens"]) == ("m-1", 30, 7)
    assert first["provider"] == "test" and first["problem"] is None
    assert len(first["messages"]) == 2 and len(second["messages"]) == 4
    assert second["messages"][:2] == first["messages"]  # one conversation, stored once
    assert len(doc["messages"]) == 4
    sent = [doc["messages"][h] for h in second["messages"]]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[2]["content"] == answer
    assert first["response"] == {"message": {"role": "assistant", "content": answer}}
    assert first["params"]["tools"][0].startswith("tool-0-")
    assert doc["total"] == {"calls": 2, "input_tokens": 60, "output_tokens": 14, "cost": None}
    await app.close()


async def test_replay_checks_the_journal_against_the_servers_code(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    ran = App(url, lease_ttl=1.0, poll_interval=0.02)

    @ran.agent
    async def flow(ctx: Context) -> int:
        return await ctx.step("one", lambda: 1) + await ctx.step("two", lambda: 2)

    handle = await ran.start("flow", {})
    async with running_worker(ran):
        await handle.result(timeout=10)
    await ran.close()

    async def replayed(app: App) -> httpx.Response:
        transport = httpx.ASGITransport(create_api(app, auth=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://a") as client:
            answer = await client.post(f"/v1/jobs/{handle.job_id}/replay")
        await app.close()
        return answer

    same = App(url)
    same.agent(flow)
    report = (await replayed(same)).json()
    assert (report["outcome"], report["ok"], report["operations"]) == ("matched", True, 2)

    changed = App(url)

    @changed.agent(name="flow")
    async def changed_flow(ctx: Context) -> int:
        return await ctx.step("one", lambda: 1) + await ctx.step("three", lambda: 3)

    report = (await replayed(changed)).json()
    assert (report["outcome"], report["ok"], report["position"]) == ("diverged", False, 1)
    assert "three" in report["diff"]

    unknown = await replayed(App(url))
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_agent"


async def test_the_ui_is_served_with_its_types_and_a_strict_policy(api: Api) -> None:
    root = await api.client.get("/")
    assert root.status_code == 307 and root.headers["location"] == "ui/"
    bare = await api.client.get("/ui")
    assert bare.status_code == 308 and bare.headers["location"] == "ui/"
    page = await api.client.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script type="module" src="app.js">' in page.text
    script = await api.client.get("/ui/views/job.js")
    assert script.headers["content-type"].startswith("text/javascript")
    for name in ("%2e%2e/pyproject.toml", "nope.js", ".hidden.js", "app.py", "views%2f..%2fapp.js"):
        missing = await api.client.get(f"/ui/{name}")
        assert missing.status_code == 404, name
        assert missing.json()["error"]["code"] == "not_found"
    spec = (await api.client.get("/openapi.json")).json()
    assert not [p for p in spec["paths"] if p == "/" or p.startswith("/ui")]


def test_every_module_the_ui_imports_is_there_and_shipped() -> None:
    """Broken imports fail in a browser only: check them here, where no browser is needed."""
    import tomllib

    pyproject = tomllib.loads((UI.parents[2] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["aetheris"]
    shipped = {f for p in patterns for f in glob.glob(p, root_dir=UI.parent, recursive=True)}
    files = [p for p in UI.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} <= {".html", ".js", ".css", ".svg"}
    for path in files:
        assert path.relative_to(UI.parent).as_posix() in shipped, path
    imported = re.compile(r"""^import .* from "(\.[^"]+)";$""", re.M)
    for script in UI.rglob("*.js"):
        for target in imported.findall(script.read_text()):
            assert (script.parent / target).resolve().is_file(), f"{script.name}: {target}"
    page = (UI / "index.html").read_text()
    for target in re.findall(r'(?:src|href)="([\w./-]+)"', page):
        assert (UI / target).is_file(), target
