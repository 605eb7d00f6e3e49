"""The ``aetheris`` command through a real ``aetheris server`` (``AETHERIS_URL`` and
``AETHERIS_API_KEY``) with a real worker process: the same commands print the same thing as on
the database itself, a key's role and tenant apply, and what needs the database says so."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from typing import Any

import httpx
import pytest

from aetheris.webhooks import verify_signature
from tests.acceptance.test_server import (
    APP,
    HERE,
    Processes,
    free_port,
    processes,
    wait_until,
)
from tests.webhooks_kit import receiver

__all__ = ["processes"]  # the fixture, shared with test_server


class Both:
    """Runs ``python -m aetheris`` from this checkout on the database, or through the server
    with a key (the database URL stays set: a server URL wins over it)."""

    def __init__(self, processes: Processes, base: str) -> None:
        self.processes = processes
        self.base = base
        self.env = {**processes.env, "COLUMNS": "200", "NO_COLOR": "1"}
        self.keys: dict[str, str] = {}

    def __call__(self, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if key is not None:
            env.update(AETHERIS_URL=self.base, AETHERIS_API_KEY=self.keys[key])
        return subprocess.run(
            [sys.executable, "-m", "aetheris", *args],
            cwd=HERE,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def ok(self, *args: str, key: str | None = None) -> str:
        done = self(*args, key=key)
        assert done.returncode == 0, f"aetheris {' '.join(args)}: {done.stderr}{done.stdout}"
        return done.stdout

    def json(self, *args: str, key: str | None = None) -> Any:
        return json.loads(self.ok(*args, "--json", key=key))

    def same(self, *args: str, key: str = "viewer") -> Any:
        """The command's JSON, which must be the same on the database and over HTTP."""
        direct, remote = self.json(*args), self.json(*args, key=key)
        assert remote == direct, args
        return remote

    def status(self, job_id: str) -> str:
        status: str = self.json("jobs", "show", job_id)["status"]
        return status


@pytest.fixture
def both(processes: Processes) -> Both:
    port = free_port()
    cli = Both(processes, f"http://127.0.0.1:{port}")
    for role, tenant in [("operator", "default"), ("approver", "default"),
                         ("viewer", "default"), ("admin", "default"),
                         ("admin", "other")]:  # fmt: skip
        made = cli.json("keys", "create", "--role", role, "--tenant", tenant)
        cli.keys[role if tenant == "default" else tenant] = made["key"]
    server = processes.spawn("server", "server", "--app", APP, "--port", str(port))

    def up() -> bool:
        assert server.poll() is None, processes.output(server)
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{cli.base}/readyz", timeout=1).status_code == 200
        return False

    wait_until(up, "the server")
    processes.spawn("worker", "worker", "--app", APP)
    return cli


def test_the_cli_through_a_server_prints_what_it_prints_on_the_database(both: Both) -> None:
    done = both("start", "place_order", "--input", '{"order_id": "o1"}', "--wait", "--json",
                key="operator")  # fmt: skip
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "succeeded" and job["result"]["order_id"] == "o1"
    job_id = job["id"]
    assert both.same("jobs", "show", job_id)["result"] == job["result"]
    assert both.same("trace", job_id)["job"]["id"] == job_id
    assert both.same("jobs", "show", job_id[:10])["id"] == job_id  # the start of its id
    direct, remote = both.json("top"), both.json("top", key="viewer")
    assert remote["jobs"] == direct["jobs"] and remote["jobs"]["succeeded"] == 1
    assert both.json("top", key="other")["jobs"]["succeeded"] == 0  # another tenant's count
    assert [j["id"] for j in both.same("jobs", "list")] == [job_id]
    assert both.same("verify", job_id)["ok"] is True
    assert both.same("effects", "list")[0]["tool"] == "charge"
    for table in (("trace", job_id), ("jobs", "show", job_id), ("jobs", "list"),
                  ("effects", "list")):  # fmt: skip
        direct = both.ok(*table).splitlines()
        remote = both.ok(*table, key="viewer").splitlines()
        if direct[-1].startswith("database: "):  # where it looked: the one line that differs
            assert remote[-1] == f"server: {both.base}"
            direct, remote = direct[:-1], remote[:-1]
        assert remote == direct, table
    exported = both.processes.tmp_path / "bundle.json"
    both.ok("export", job_id, "-o", str(exported), key="viewer")
    assert json.loads(exported.read_text())["manifest"]["events"] == job["events"]
    forked = both.json("fork", job_id, "--at", "1", key="operator")["id"]  # through the server
    wait_until(lambda: both.status(forked) == "succeeded", "the fork to end")
    created = both.json("trace", forked)["events"][0]["data"]
    assert created["forked_from"]["job"] == job_id and created["tenant"] == "default"
    assert both("fork", job_id, "--at", "1", key="viewer").returncode == 1  # a viewer may not


def test_approve_signal_cancel_and_refusals_through_a_server(both: Both) -> None:
    parked = both("start", "reviewed_order", "--input", '{"order_id": "o2"}', "--wait",
                  key="operator")  # fmt: skip
    assert parked.returncode == 3, parked.stderr  # parked: it needs someone
    # "job ID started; ...", "job ID parked (...)"; a warning that no worker serves the agent yet
    # may come first (the fixture's worker registers while the module's first test starts).
    [job_id] = {line.split()[1] for line in parked.stderr.splitlines() if line.startswith("job ")}
    [request] = both.same("approvals", "list")
    assert request["job_id"] == job_id and request["position"] is not None
    denied = both("approve", job_id, key="operator")
    assert denied.returncode == 1
    assert "role 'operator' may not decide" in denied.stderr and "Traceback" not in denied.stderr
    both.ok("approve", job_id, "--args-hash", request["args_hash"], key="approver")
    wait_until(lambda: both.json("jobs", "show", job_id)["wake_on"] == "signal:shipped",
               "the wait for the parcel")  # fmt: skip
    sent = both.json("signal", job_id, "shipped", "--data", '"parcel-9"', key="operator")
    assert sent["name"] == "shipped" and sent["sender"].startswith("key:")
    wait_until(lambda: both.status(job_id) == "succeeded", "the job to end")
    assert both.same("jobs", "show", job_id)["result"]["parcel"] == "parcel-9"
    decisions = [e["data"] for e in both.same("trace", job_id)["events"] if e["type"] == "op"]
    assert any("(approver)" in json.dumps(d) for d in decisions)  # the key, as who approved

    other = both.json("start", "reviewed_order", "--input", '{"order_id": "o3"}',
                      key="operator")["id"]  # fmt: skip
    assert both("cancel", other, key="viewer").returncode == 1  # a viewer may not
    hidden = both("jobs", "show", other, key="other")
    assert hidden.returncode == 1 and "not found" in hidden.stderr
    hidden = both("jobs", "show", other[:10], key="other")  # nor by the start of its id
    assert hidden.returncode == 1 and "not found" in hidden.stderr
    assert both("cancel", other, key="other").returncode == 1
    both.ok("cancel", other, key="operator")
    wait_until(lambda: both.status(other) == "cancelled", "the cancel")

    wrong = both("jobs", "list")
    assert wrong.returncode == 0
    bad_key = dict(both.keys)
    both.keys["bogus"] = "ak_0000_nope"
    refused = both("jobs", "list", key="bogus")
    assert refused.returncode == 1 and "API key is not valid" in refused.stderr
    both.keys = bad_key
    for local_only in (("replay", job_id, "--app", APP), ("db", "migrate"),
                       ("worker", "--app", APP), ("status",)):  # fmt: skip
        done = both(*local_only, key="viewer")
        assert done.returncode == 2, local_only
        assert "cannot go through a server" in done.stderr, done.stderr


async def test_webhooks_through_a_server_and_on_the_database(both: Both) -> None:
    """Subscribe through the server; the server delivers a job's end, signed; the database
    and the server list the same subscriptions and deliveries."""
    async with receiver() as site:
        hook = both.json("webhooks", "create", f"{site.url}/orders", "--event", "job.completed",
                         key="admin")  # fmt: skip
        assert hook["secret"].startswith("whsec_") and hook["tenant"] == "default"
        denied = both("webhooks", "create", site.url, "--event", "job.failed", key="operator")
        assert denied.returncode == 1 and "may not webhooks" in denied.stderr
        done = both("start", "place_order", "--input", '{"order_id": "o9"}', "--wait",
                    "--json", key="operator")  # fmt: skip
        assert done.returncode == 0, done.stderr
        got = await site.next(timeout=30)
    h = got.headers
    assert verify_signature(
        hook["secret"], h["aetheris-timestamp"], got.body, h["aetheris-signature"]
    )
    assert json.loads(got.body)["job"]["id"] == json.loads(done.stdout)["id"]

    def delivered() -> bool:
        rows = both.json("webhooks", "deliveries", hook["id"])
        return [r["state"] for r in rows] == ["delivered"]

    wait_until(delivered, "the delivery to be recorded")
    listed = both.same("webhooks", "list", key="admin")
    assert [w["id"] for w in listed] == [hook["id"]] and "secret" not in listed[0]
    [row] = both.same("webhooks", "deliveries", key="admin")
    assert row["event_id"] == h["aetheris-event-id"] and row["log"][0]["status"] == 200
    assert both("webhooks", "deliveries", hook["id"], key="other").returncode == 1  # not theirs
    assert both.json("webhooks", "delete", hook["id"], key="admin")["active"] is False
    assert both.same("webhooks", "list", key="admin") == []
    direct, remote = (
        both.ok("webhooks", "list", "--all"),
        both.ok("webhooks", "list", "--all", key="admin"),
    )
    assert direct.splitlines()[:-1] == remote.splitlines()[:-1]
