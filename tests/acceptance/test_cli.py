"""The installed ``aetheris`` command and real worker processes, driven as a user drives them.

Every test gets a fresh SQLite file in its ``tmp_path`` and a fresh "world" folder that the
tools of :mod:`acceptance_app` write to, so what really happened can be counted outside the
runtime. Worker processes are always stopped (SIGTERM, then SIGKILL) by the ``workers`` fixture.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
APP = "acceptance_app:app"
AGENTS = ("place_order", "reviewed_order", "slow_order")
# The documented ``--json`` schema; it may grow, so tests check these are present.
JOB_FIELDS = {
    "id",
    "agent",
    "status",
    "park_reason",
    "park_detail",
    "input",
    "result",
    "error",
    "idempotency_key",
    "queue",
    "priority",
    "lease_epoch",
    "lease_owner",
    "lease_expires_at",
    "attempts",
    "events",
    "created_at",
    "updated_at",
}
EVENT_FIELDS = {"seq", "type", "position", "at", "data", "hash", "prev_hash"}
TERMINAL = ("succeeded", "failed", "compensated", "cancelled")


def _aetheris() -> str:
    """The console script installed next to this interpreter (not a shim from another one)."""
    beside = Path(sys.executable).with_name("aetheris")
    found = str(beside) if beside.exists() else shutil.which("aetheris")
    assert found, "the aetheris console script is not installed"
    return found


AETHERIS = _aetheris()


class Cli:
    """Runs ``aetheris`` against one database, in the folder that holds the acceptance App."""

    def __init__(self, tmp_path: Path, url: str | None = None) -> None:
        self.db = tmp_path / "aetheris.db"
        self.url = url or f"sqlite:///{self.db}"
        self.world = tmp_path / "world"
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("AETHERIS_CRASH_AT", "FORCE_COLOR", "PYTHONPATH")
        }
        self.env.update(
            AETHERIS_DATABASE_URL=self.url,
            ACCEPTANCE_WORLD=str(self.world),
            COLUMNS="200",
            NO_COLOR="1",
            PYTHONUNBUFFERED="1",
        )

    def __call__(
        self, *args: str, timeout: float = 30, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [AETHERIS, *args],
            cwd=HERE,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str, timeout: float = 30) -> str:
        done = self(*args, timeout=timeout)
        assert done.returncode == 0, f"aetheris {' '.join(args)}: {done.stderr}{done.stdout}"
        return done.stdout

    def json(self, *args: str, timeout: float = 30) -> Any:
        return json.loads(self.ok(*args, "--json", timeout=timeout))

    def jobs(self) -> list[dict[str, Any]]:
        jobs: list[dict[str, Any]] = self.json("jobs", "list")
        return jobs

    def job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.json("jobs", "show", job_id)
        return job

    def events(self, job_id: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self.json("trace", job_id)["events"]
        return events

    def wait_for(self, job_id: str, *statuses: str, timeout: float = 15) -> dict[str, Any]:
        wanted = statuses or TERMINAL
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in wanted:
                return job
            assert time.monotonic() < deadline, f"job {job_id} is {job['status']}, not {wanted}"
            time.sleep(0.1)

    def registered_agents(self) -> list[str]:
        """The agents workers have registered, read straight from the database (no write)."""
        if self.url.startswith("postgresql"):
            import psycopg

            with psycopg.connect(self.url) as conn:
                return [r[0] for r in conn.execute("SELECT name FROM agents ORDER BY name")]
        if not self.db.exists():
            return []
        with contextlib.closing(sqlite3.connect(self.db, timeout=5)) as conn:
            try:
                return [row[0] for row in conn.execute("SELECT name FROM agents ORDER BY name")]
            except sqlite3.OperationalError:  # not migrated yet
                return []

    def lines(self, name: str) -> list[str]:
        path = self.world / name
        return path.read_text().splitlines() if path.exists() else []


class Worker:
    """One ``aetheris worker`` process; its stdout and stderr go to a log file."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        """Send ``sig`` and wait for the process to exit; return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float = 10) -> int:
        """Wait for the process to exit by itself; return its exit code."""
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


class Workers:
    """Starts worker processes for a test; :meth:`close` leaves none running."""

    def __init__(self, cli: Cli, tmp_path: Path) -> None:
        self.cli = cli
        self.tmp_path = tmp_path
        self.started: list[Worker] = []

    def start(self, *options: str, crash_at: str | None = None) -> Worker:
        """Start ``aetheris worker`` and return once it has registered the App's agents."""
        env = dict(self.cli.env)
        if crash_at:
            env["AETHERIS_CRASH_AT"] = crash_at
        log_path = self.tmp_path / f"worker-{len(self.started)}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [AETHERIS, "worker", "--app", APP, "--concurrency", "4", *options],
                cwd=HERE,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(proc, log_path)
        self.started.append(worker)
        self._wait_until_serving(worker)
        return worker

    def _wait_until_serving(self, worker: Worker, timeout: float = 15) -> None:
        # The "serving" line is printed just before the worker registers its agents, and the CLI
        # accepts any agent name on a database no worker has registered agents in yet, so wait
        # until the registry (read straight from the file) lists them.
        deadline = time.monotonic() + timeout
        while "serving" not in worker.output or self.cli.registered_agents() != list(AGENTS):
            assert worker.proc.poll() is None, f"the worker exited early:\n{worker.output}"
            assert time.monotonic() < deadline, f"the worker never got ready:\n{worker.output}"
            time.sleep(0.05)

    def close(self) -> None:
        for worker in self.started:
            if worker.proc.poll() is None:
                worker.proc.terminate()
        for worker in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.proc.wait(timeout=5)
            worker.close()


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


@pytest.fixture
def workers(cli: Cli, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(cli, tmp_path)
    try:
        yield started
    finally:
        started.close()


def start_job(cli: Cli, agent: str, data: dict[str, Any], *options: str) -> str:
    """Start a job (validated against the App, so no worker is needed) and return its id."""
    out = cli.ok("start", "--app", APP, agent, "--input", json.dumps(data), *options)
    return out.strip()


def done_charge(cli: Cli) -> str:
    """The charge id of the only charge so far, from the world's log (``ch_`` + key tail)."""
    (line,) = cli.lines("charges.log")
    return f"ch_{line.split()[-1][-8:]}"


# -- the schema -------------------------------------------------------------------------------


def test_migrate_check_reports_a_pending_migration_until_migrate_runs(cli: Cli) -> None:
    url = ["--database-url", cli.url]
    env = {k: v for k, v in cli.env.items() if k != "AETHERIS_DATABASE_URL"}

    check = cli(*url, "db", "migrate", "--check", env=env)
    assert check.returncode == 1, check.stdout + check.stderr
    assert "migration pending" in check.stdout
    assert cli.url in check.stdout

    migrate = cli(*url, "db", "migrate", env=env)
    assert migrate.returncode == 0, migrate.stderr
    assert re.search(r"schema version (\d+) \(latest \1\)", migrate.stdout), migrate.stdout

    again = cli(*url, "db", "migrate", "--check", env=env)
    assert again.returncode == 0, again.stderr
    assert "pending" not in again.stdout
    state = json.loads(cli(*url, "db", "migrate", "--check", "--json", env=env).stdout)
    assert state["up_to_date"] is True and state["schema"] == state["latest"]

    # ``python -m aetheris`` is the same command; it reads AETHERIS_DATABASE_URL too.
    module = subprocess.run(
        [sys.executable, "-m", "aetheris", "db", "migrate", "--check"],
        cwd=HERE,
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert module.returncode == 0, module.stderr
    assert module.stdout == again.stdout


# -- a job end to end -------------------------------------------------------------------------


def test_a_worker_process_runs_a_started_job_and_the_cli_shows_it(
    cli: Cli, workers: Workers
) -> None:
    workers.start()
    done = cli("start", "place_order", "--input", '{"order_id": "o1", "quantity": 2}', "--wait")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"order_id": "o1", "charge": done_charge(cli), "amount": 25.0}

    job = cli.json("start", "place_order", "--input", '{"order_id": "o2"}', "--wait")
    assert set(job) >= JOB_FIELDS
    assert job["agent"] == "place_order"
    assert job["status"] == "succeeded"
    assert job["input"] == {"order_id": "o2"}
    assert job["result"]["amount"] == 12.5
    assert job["result"]["charge"].startswith("ch_")
    assert job["error"] is None
    assert job["lease_owner"] is None
    assert job["attempts"] == 1
    assert len(cli.lines("charges.log")) == 2

    listed = cli.jobs()
    assert len(listed) == 2
    assert listed[0]["id"] == job["id"], "newest first"
    assert all(set(j) >= JOB_FIELDS for j in listed)
    assert {j["status"] for j in listed} == {"succeeded"}
    shown = cli.job(job["id"])
    assert shown.pop("model_calls")["calls"] == 0, "jobs show totals the model calls too"
    assert shown == job

    table = cli.ok("trace", job["id"])
    assert job["id"] in table
    for text in ("job_created", "job_claimed", "lookup_order#1", "charge#1", "job_succeeded"):
        assert text in table
    assert "side_effect_committed" in table
    assert "intent" in table

    trace = cli.json("trace", job["id"])
    assert trace["job"] == job
    events = trace["events"]
    assert all(set(e) >= EVENT_FIELDS for e in events)
    assert [e["seq"] for e in events] == list(range(len(events))) == list(range(job["events"]))
    assert [e["type"] for e in events] == [
        "job_created",
        "job_claimed",
        "op",
        "intent",
        "op",
        "job_succeeded",
    ]
    steps = [(e["position"], e["data"]["name"], e["data"].get("outcome")) for e in events[2:5]]
    assert steps == [
        (0, "lookup_order", "pure"),
        (1, "charge", None),
        (1, "charge", "side_effect_committed"),
    ]
    for before, after in itertools.pairwise(events):
        assert after["prev_hash"] == before["hash"]
        assert re.fullmatch(r"[0-9a-f]{64}", after["hash"])

    verified = cli("verify", job["id"])
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith(f"ok: {len(events)} events, head {events[-1]['hash']}")
    report = cli.json("verify", job["id"])
    assert report["ok"] is True
    assert report["events"] == len(events)
    assert report["head"] == events[-1]["hash"]


# -- idempotency ------------------------------------------------------------------------------


def test_starting_twice_with_one_idempotency_key_gives_one_job(cli: Cli) -> None:
    first = start_job(cli, "place_order", {"order_id": "o1"}, "--idempotency-key", "order-o1")
    second = start_job(cli, "place_order", {"order_id": "o1"}, "--idempotency-key", "order-o1")
    assert first == second
    (job,) = cli.jobs()
    assert job["id"] == first
    assert job["idempotency_key"] == "order-o1"

    other_input = cli(
        "start", "--app", APP, "place_order", "--input", '{"order_id": "o2"}',
        "--idempotency-key", "order-o1",
    )  # fmt: skip
    assert other_input.returncode == 1, other_input.stdout
    assert "idempotency key 'order-o1'" in other_input.stderr
    assert first in other_input.stderr
    assert other_input.stdout == ""

    other_agent = cli(
        "start", "--app", APP, "slow_order", "--input", '{"order_id": "o1"}',
        "--idempotency-key", "order-o1",
    )  # fmt: skip
    assert other_agent.returncode == 1, other_agent.stdout
    assert "idempotency key 'order-o1'" in other_agent.stderr
    assert [j["id"] for j in cli.jobs()] == [first]


# -- bad input writes nothing -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"order_id": ', "Invalid value for --input: not valid JSON"),
        ("order_id=o1", "Invalid value for --input: not valid JSON"),
        ('[{"order_id": "o1"}]', "Invalid value for --input: must be a JSON object"),
        ('"o1"', "Invalid value for --input: must be a JSON object"),
        ("null", "Invalid value for --input: must be a JSON object"),
    ],
    ids=["truncated", "not-json", "array", "string", "null"],
)
def test_input_that_is_not_a_json_object_is_a_usage_error(cli: Cli, raw: str, message: str) -> None:
    existing = start_job(cli, "place_order", {"order_id": "o1"})
    before = cli.jobs()
    for app_option in ([], ["--app", APP]):
        done = cli("start", *app_option, "place_order", "--input", raw)
        assert done.returncode == 2, done.stdout + done.stderr
        assert message in done.stderr
        assert "Traceback" not in done.stderr
        assert done.stdout == ""
    assert cli.jobs() == before
    assert [j["id"] for j in before] == [existing]


def test_an_unknown_agent_is_refused_with_the_agents_a_worker_registered(
    cli: Cli, workers: Workers
) -> None:
    # A database no worker has served yet knows no agents: the job is accepted and waits.
    early = cli.ok("start", "place_ordr", "--input", '{"order_id": "o1"}').strip()

    workers.start()
    before = cli.jobs()
    done = cli("start", "place_ordr", "--input", '{"order_id": "o1"}')
    assert done.returncode == 1, done.stdout
    assert (
        "unknown agent 'place_ordr' (known agents: place_order, reviewed_order, slow_order)"
        in done.stderr
    )
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    after = cli.jobs()
    assert after == before
    assert [(j["id"], j["status"]) for j in after] == [(early, "pending")], "no worker serves it"


def test_an_unknown_agent_is_refused_with_the_agents_of_the_app(cli: Cli) -> None:
    done = cli("start", "--app", APP, "refund", "--input", "{}")
    assert done.returncode == 1, done.stdout
    assert (
        "unknown agent 'refund' (known agents: place_order, reviewed_order, slow_order)"
        in done.stderr
    )
    assert cli.jobs() == []


@pytest.mark.parametrize(
    ("data", "problems"),
    [
        ({}, ["order_id: Field required"]),
        ({"order_id": "o1", "quantity": "two"}, ["quantity: Input should be a valid integer"]),
        ({"order_id": 7}, ["order_id: Input should be a valid string"]),
        ({"order_id": "o1", "colour": "red"}, ["colour: Extra inputs are not permitted"]),
        (
            {"quantity": [1]},
            ["order_id: Field required", "quantity: Input should be a valid integer"],
        ),
    ],
    ids=["missing", "wrong-type", "number-for-string", "unknown-field", "two-problems"],
)
def test_input_that_does_not_fit_the_agent_is_refused_with_app(
    cli: Cli, data: dict[str, Any], problems: list[str]
) -> None:
    start_job(cli, "place_order", {"order_id": "o1"})
    before = cli.jobs()
    done = cli("start", "--app", APP, "place_order", "--input", json.dumps(data))
    assert done.returncode == 1, done.stdout
    assert "invalid input for agent 'place_order': " in done.stderr
    for problem in problems:
        assert problem in done.stderr
    assert "Traceback" not in done.stderr
    assert cli.jobs() == before


@pytest.mark.parametrize(
    ("data", "problems"),
    [
        ({}, ["order_id: required, missing"]),
        (
            {"order_id": "o1", "colour": "red"},
            ["colour: unknown field (expected order_id, quantity)"],
        ),
    ],
    ids=["missing", "unknown-field"],
)
def test_without_app_input_is_refused_by_the_schema_a_worker_registered(
    cli: Cli, workers: Workers, data: dict[str, Any], problems: list[str]
) -> None:
    assert workers.start().stop() == 0  # the registration stays: no worker need run for it
    done = cli("start", "place_order", "--input", json.dumps(data))
    assert done.returncode == 1, done.stdout
    assert "invalid input for agent 'place_order': " in done.stderr
    for problem in problems:
        assert problem in done.stderr
    assert "Traceback" not in done.stderr
    assert cli.jobs() == []


def test_without_app_a_bad_field_fails_the_job_on_the_worker(cli: Cli, workers: Workers) -> None:
    workers.start()
    done = cli("start", "place_order", "--input", '{"order_id": "o1", "quantity": "two"}', "--wait")
    assert done.returncode == 1, done.stdout
    assert "failed" in done.stderr
    assert "quantity: Input should be a valid integer" in done.stderr
    (job,) = cli.jobs()
    assert job["status"] == "failed"
    assert job["error"]["type"] == "InvalidInput"
    assert cli.lines("charges.log") == []


def test_start_wait_that_times_out_says_so_without_a_traceback(cli: Cli) -> None:
    done = cli(
        "start", "--app", APP, "place_order", "--input", '{"order_id": "o1"}',
        "--wait", "--timeout", "0.3",
    )  # fmt: skip
    assert done.returncode != 0
    assert "is still pending after 0.3s" in done.stderr
    assert "Traceback" not in done.stderr


def test_jobs_show_prints_a_failed_job_error_without_markup_tags(
    cli: Cli, workers: Workers
) -> None:
    workers.start()
    cli("start", "place_order", "--input", '{"order_id": 7}', "--wait")
    (job,) = cli.jobs()
    shown = cli.ok("jobs", "show", job["id"])
    assert "InvalidInput: invalid input for agent 'place_order'" in shown
    assert "[bold]" not in shown
    assert "[/bold]" not in shown


# -- the effects ledger -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "choice",
    [
        [],
        ["--not-executed", "--fail"],
        ["--committed", '"ch_1"', "--not-executed"],
        ["--committed", '"ch_1"', "--not-executed", "--fail"],
    ],
    ids=["none", "not-executed+fail", "committed+not-executed", "all-three"],
)
def test_effects_resolve_needs_exactly_one_resolution(cli: Cli, choice: list[str]) -> None:
    job_id = start_job(cli, "place_order", {"order_id": "o1"})
    before = cli.events(job_id)
    done = cli("effects", "resolve", job_id, "1", *choice)
    assert done.returncode == 2, done.stdout
    assert "Usage: aetheris effects resolve" in done.stderr
    assert "give exactly one of --committed JSON, --not-executed, --fail" in done.stderr
    assert cli.events(job_id) == before


def test_effects_resolve_refuses_a_job_that_is_not_parked_in_doubt(
    cli: Cli, workers: Workers
) -> None:
    workers.start()
    job = cli.json("start", "place_order", "--input", '{"order_id": "o1"}', "--wait")
    before = cli.events(job["id"])

    committed = cli("effects", "resolve", job["id"], "1", "--not-executed")
    assert committed.returncode == 1, committed.stdout
    assert f"effect at position 1 of job {job['id']} is committed, not in doubt" in committed.stderr

    no_effect = cli("effects", "resolve", job["id"], "0", "--fail")
    assert no_effect.returncode == 1, no_effect.stdout
    assert f"job {job['id']} has no effect at position 0" in no_effect.stderr

    bad_json = cli("effects", "resolve", job["id"], "1", "--committed", "{oops")
    assert bad_json.returncode == 2, bad_json.stdout
    assert "Invalid value for --committed: not valid JSON" in bad_json.stderr

    missing = cli("effects", "resolve", "no-such-job", "1", "--fail")
    assert missing.returncode == 1, missing.stdout
    assert "no-such-job" in missing.stderr

    for done in (committed, no_effect, bad_json, missing):
        assert "Traceback" not in done.stderr
    assert cli.events(job["id"]) == before
    shown = cli.job(job["id"])
    assert shown.pop("model_calls")["calls"] == 0, "jobs show totals the model calls too"
    assert shown == job
    assert len(cli.lines("charges.log")) == 1


def test_an_in_doubt_effect_is_resolved_by_an_operator_and_the_job_resumes(
    cli: Cli, workers: Workers
) -> None:
    doomed = workers.start(crash_at="after_intent:charge")
    job_id = cli.ok("start", "place_order", "--input", '{"order_id": "o1"}').strip()
    assert doomed.wait() == -signal.SIGKILL, doomed.output  # it kills itself
    assert cli.lines("charges.log") == []

    workers.start()
    job = cli.wait_for(job_id, "parked")
    assert job["park_reason"] == "effect_in_doubt"
    (effect,) = cli.json("effects", "list", "--in-doubt")
    assert (effect["job_id"], effect["position"], effect["tool"]) == (job_id, 1, "charge")
    assert effect["state"] == "in_doubt"
    assert job_id in cli.ok("effects", "list", "--in-doubt")

    wrong = cli("effects", "resolve", job_id, "0", "--not-executed")
    assert wrong.returncode == 1
    assert f"job {job_id} has no effect at position 0" in wrong.stderr

    resolved = cli(
        "effects", "resolve", job_id, "1", "--not-executed", "--reason", "provider has no record",
        "--by", "acceptance",
    )  # fmt: skip
    assert resolved.returncode == 0, resolved.stderr
    assert resolved.stdout.strip() == f"job {job_id} is pending again"

    job = cli.wait_for(job_id)
    assert job["status"] == "succeeded", job
    assert len(cli.lines("charges.log")) == 1
    assert cli.json("effects", "list", "--in-doubt") == []
    trace = cli.ok("trace", job_id)
    assert "in_doubt" in trace
    assert "by acceptance" in trace

    again = cli("effects", "resolve", job_id, "1", "--committed", '"ch_x"')
    assert again.returncode == 1
    assert f"effect at position 1 of job {job_id} is committed, not in doubt" in again.stderr
    assert cli.ok("verify", job_id).startswith("ok: ")


# -- stopping a worker ------------------------------------------------------------------------


def test_sigterm_mid_run_hands_the_job_back_and_loses_nothing(cli: Cli, workers: Workers) -> None:
    worker = workers.start("--grace", "0.2")
    job_id = cli.ok("start", "slow_order", "--input", '{"order_id": "o1", "seconds": 2}').strip()
    deadline = time.monotonic() + 10
    while cli.lines("naps.log") == []:
        assert time.monotonic() < deadline, "the nap never began"
        time.sleep(0.02)

    asked = time.monotonic()
    code = worker.stop(signal.SIGTERM)
    took = time.monotonic() - asked
    assert code == 0, worker.output
    assert took < 1.5, f"the worker took {took:.2f}s to stop with --grace 0.2"
    assert "Traceback" not in worker.output

    job = cli.job(job_id)
    assert job["status"] == "pending", job
    assert job["lease_owner"] is None
    released = [e for e in cli.events(job_id) if e["type"] == "job_released"]
    assert [e["data"]["reason"] for e in released] == ["worker stopping"]
    assert len(cli.lines("charges.log")) == 1

    workers.start()
    job = cli.wait_for(job_id)
    assert job["status"] == "succeeded", job
    assert job["result"]["rested"] == "o1 rested"
    assert job["attempts"] == 2
    assert len(cli.lines("charges.log")) == 1, "the charge was dispatched again"
    assert cli.lines("naps.log") == ["o1", "o1"], "the pure nap is re-run after the hand-back"
    assert cli.ok("verify", job_id).startswith("ok: ")


# -- humans, signals and control --------------------------------------------------------------


def test_approve_signal_and_cancel_from_the_cli(cli: Cli, workers: Workers) -> None:
    workers.start()
    job_id = cli.ok("start", "reviewed_order", "--input", '{"order_id": "o9"}').strip()
    parked = cli.wait_for(job_id, "parked")
    request = parked["park_detail"]
    assert parked["park_reason"] == "approval"
    assert request["payload"] == {"order_id": "o9", "price": 12.5}
    assert cli.lines("charges.log") == []
    stale = cli("approve", job_id, "--args-hash", "f" * 64)
    assert stale.returncode == 1 and "review it again" in stale.stderr
    decided = cli.json("approve", job_id, "--by", "qa", "--args-hash", request["args_hash"])
    assert decided["sender"] == "qa" and decided["name"].startswith("approval:"), decided
    waiting = cli.wait_for(job_id, "parked")
    while waiting["park_reason"] != "signal":
        time.sleep(0.1)
        waiting = cli.job(job_id)
    sent = cli.json("signal", job_id, "shipped", "--data", '"box 7"', "--signal-id", "ship-1")
    assert sent["name"] == "shipped" and sent["signal_id"] == "ship-1"
    done = cli.wait_for(job_id, "succeeded")
    assert done["result"]["approved_by"] == "qa" and done["result"]["parcel"] == "box 7"
    assert len(cli.lines("charges.log")) == 1
    assert "by qa" in cli.ok("trace", job_id)
    late = cli("signal", job_id, "shipped")
    assert late.returncode == 1 and "ended" in late.stderr

    waiting_id = cli.ok("start", "reviewed_order", "--input", '{"order_id": "o10"}').strip()
    cli.wait_for(waiting_id, "parked")
    assert "cancel" in cli.ok("cancel", waiting_id)
    assert cli.wait_for(waiting_id, "cancelled")["error"]["type"] == "Cancelled"
    again = cli("cancel", waiting_id)
    assert again.returncode == 1 and "already ended" in again.stderr


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--lease-ttl", "0", "--lease-ttl"),
        ("--lease-ttl", "-1", "--lease-ttl"),
        ("--lease-ttl", "0.1", "0.5"),
        ("--concurrency", "0", "--concurrency"),
        ("--poll-interval", "0", "--poll-interval"),
        ("--grace", "-1", "--grace"),
    ],
)
def test_worker_flags_that_cannot_work_are_refused_before_any_job_is_touched(
    cli: Cli, flag: str, value: str, message: str
) -> None:
    job_id = cli.ok("start", "place_order", "--input", '{"order_id": "o1"}').strip()
    done = cli("worker", "--app", APP, flag, value)
    assert done.returncode == 2, done.stderr
    assert f"Invalid value for '{flag}'" in done.stderr and message in done.stderr
    assert "Traceback" not in done.stderr
    job = cli.job(job_id)
    assert (job["status"], job["attempts"]) == ("pending", 0)


def test_trace_follow_shows_a_job_live_until_it_ends(cli: Cli, workers: Workers) -> None:
    """``trace --follow``: JSON lines as the journal grows; at a terminal, a live table that
    ends as the whole trace; piped, the whole trace once the job has ended."""
    workers.start()
    job_id = cli.ok("start", "reviewed_order", "--input", '{"order_id": "o8"}').strip()
    feed = subprocess.Popen(
        [AETHERIS, "trace", job_id, "--follow", "--json"],
        cwd=HERE, env=cli.env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    piped = subprocess.Popen(
        [AETHERIS, "trace", job_id[:12], "-f"],
        cwd=HERE, env=cli.env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    terminal = pty_command([AETHERIS, "trace", job_id, "--follow"], cli.env)
    try:
        follow_the_job(cli, job_id, feed, piped, terminal)
    finally:  # never leave one running, even when the test failed
        for proc in (feed, piped, terminal.proc):
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        for stream in (feed.stdout, piped.stdout):
            if stream is not None:
                stream.close()


def follow_the_job(
    cli: Cli,
    job_id: str,
    feed: subprocess.Popen[str],
    piped: subprocess.Popen[str],
    terminal: PtyCommand,
) -> None:
    assert feed.stdout is not None and piped.stdout is not None
    first = [json.loads(feed.stdout.readline()) for _ in range(2)]
    assert [e["type"] for e in first] == ["job_created", "job_claimed"]
    cli.wait_for(job_id, "parked")
    assert piped.poll() is None and feed.poll() is None  # the job has not ended
    request = cli.job(job_id)["park_detail"]
    cli.ok("approve", job_id, "--args-hash", request["args_hash"])
    while cli.job(job_id)["park_reason"] != "signal":
        time.sleep(0.1)
    cli.ok("signal", job_id, "shipped", "--data", '"box 8"')
    # Read through the file object (communicate() would skip what readline() buffered).
    rest = feed.stdout.read()
    assert feed.wait(timeout=30) == 0
    events = first + [json.loads(line) for line in rest.splitlines()]
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == "job_succeeded"
    table = piped.stdout.read()
    assert piped.wait(timeout=30) == 0
    assert table.splitlines()[0].startswith(f"job {job_id}  agent reviewed_order  succeeded")
    assert table.count("\n") >= len(events)  # one row per event (or more, wrapped)
    screen = terminal.finish(timeout=30)
    assert terminal.returncode == 0
    assert f"job {job_id}  agent reviewed_order  succeeded" in screen
    assert "job_succeeded" in screen


class PtyCommand:
    """A command at a pseudo-terminal (so it draws for a person), its screen output kept."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        import pty

        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            argv, cwd=HERE, env={**env, "TERM": "xterm"}, stdin=slave, stdout=slave,
            stderr=slave, close_fds=True,
        )  # fmt: skip
        os.close(slave)
        self.output = bytearray()

    def finish(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the command ended and closed the terminal
                break
            if not chunk:
                break
            self.output += chunk
            assert time.monotonic() < deadline, "the command did not end"
        self.proc.wait(timeout=10)
        os.close(self.master)
        return self.output.decode("utf-8", "replace")

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode


def pty_command(argv: list[str], env: dict[str, str]) -> PtyCommand:
    return PtyCommand(argv, env)


def test_top_shows_jobs_by_status_and_their_rates_live(cli: Cli, workers: Workers) -> None:
    workers.start()
    for n in range(3):
        cli.ok("start", "place_order", "--input", json.dumps({"order_id": f"t{n}"}))
    once = cli.json("top")
    assert sum(once["jobs"].values()) == 3 and once["made_per_minute"] is None
    assert "made" not in cli.ok("top", "--once")  # one look: no rates to tell
    screen = pty_command([AETHERIS, "top", "--interval", "0.3"], cli.env)
    time.sleep(1.5)  # a few looks
    screen.proc.send_signal(signal.SIGINT)
    shown = screen.finish(timeout=10)
    assert screen.returncode == 0, shown  # Ctrl-C is how one leaves: not an error
    assert "made" in shown and "/min" in shown and "succeeded" in shown
    assert "Traceback" not in shown
    assert cli("top", "--interval", "0.1").returncode == 2  # too often
