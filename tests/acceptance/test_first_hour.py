"""The first hour with the ``aetheris`` command: what a newcomer types, right and wrong.

The installed command, run as a user runs it: read commands never create or migrate a
database, every error names the problem (and the database), and nothing hangs in silence.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from aetheris import App, Context, JobStatus
from aetheris.testing import running_worker
from tests.acceptance.test_cli import AETHERIS, HERE, Cli, Workers, cli, start_job, workers
from tests.integration.helpers import wait_for

__all__ = ["cli", "workers"]  # fixtures used here

ROOT = HERE.parents[1]


def test_read_commands_on_a_missing_database_create_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "not" / "there.db"
    cli = Cli(tmp_path, url=f"sqlite:///{missing}")
    for command in (["jobs", "list"], ["trace", "abc"], ["effects", "list"], ["verify", "abc"]):
        done = cli(*command)
        assert done.returncode == 1, done
        assert f"no Aetheris database at {missing}" in done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "not").exists()
    # The default, in a folder where nothing has run: same, and no .aetheris/ appears.
    env = {k: v for k, v in cli.env.items() if k != "AETHERIS_DATABASE_URL"}
    done = subprocess.run(
        [AETHERIS, "jobs", "list"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 1 and "no Aetheris database at" in done.stderr
    assert not (tmp_path / ".aetheris").exists()


def test_a_read_command_on_a_postgres_database_without_tables_leaves_it_empty(
    tmp_path: Path,
) -> None:
    from tests.conftest import PG_URL, _admin_execute, _with_db, require_postgres

    require_postgres()
    name = f"aetheris_empty_{uuid.uuid4().hex[:10]}"
    _admin_execute(f"CREATE DATABASE {name}")
    try:
        url = _with_db(PG_URL, name)
        done = Cli(tmp_path, url=url)("jobs", "list")
        assert done.returncode == 1
        assert "has no Aetheris tables" in done.stderr and name in done.stderr
        import psycopg

        with psycopg.connect(url) as conn:
            tables = conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchone()
        assert tables == (0,)
    finally:
        _admin_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_the_database_url_may_follow_the_command(cli: Cli, tmp_path: Path) -> None:
    job_id = start_job(cli, "place_order", {"order_id": "o-1"})
    env = {k: v for k, v in cli.env.items() if k != "AETHERIS_DATABASE_URL"}
    done = subprocess.run(
        [AETHERIS, "jobs", "show", job_id, "--json", "--database-url", cli.url],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["id"] == job_id


def test_an_unreachable_postgres_is_one_notice_then_one_clear_error(tmp_path: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:1/none?aetheris_connect_timeout=1"
    done = Cli(tmp_path, url=url)("jobs", "list")
    assert done.returncode == 1, done
    lines = done.stderr.splitlines()
    assert lines[0].startswith("aetheris: waiting up to 1 s"), lines
    assert lines[0].endswith("Connection refused"), lines
    assert "cannot connect to PostgreSQL at postgresql://postgres@127.0.0.1:1/none" in lines[1]
    assert "Traceback" not in done.stderr and len(lines) <= 3, lines


def test_memory_urls_are_refused_by_the_command(cli: Cli) -> None:
    done = cli("--database-url", "memory://", "start", "place_order")
    assert done.returncode == 1
    assert "memory:// lives inside one process" in done.stderr
    assert "memory://" not in cli("--help").stdout


def test_input_from_a_file_or_standard_input(cli: Cli, tmp_path: Path) -> None:
    data = tmp_path / "input.json"
    data.write_text(json.dumps({"order_id": "o-file", "quantity": 2}))
    from_file = cli.ok("start", "place_order", "--input", f"@{data}").strip()
    assert cli.job(from_file)["input"] == {"order_id": "o-file", "quantity": 2}
    piped = subprocess.run(
        [AETHERIS, "start", "place_order", "--input", "-"],
        input=json.dumps({"order_id": "o-stdin"}),
        cwd=HERE,
        env=cli.env,
        capture_output=True,
        text=True,
    )
    assert piped.returncode == 0, piped.stderr
    assert cli.job(piped.stdout.strip())["input"] == {"order_id": "o-stdin"}
    missing = cli("start", "place_order", "--input", f"@{tmp_path / 'nope.json'}")
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_export_to_standard_output_and_to_a_missing_folder(cli: Cli, tmp_path: Path) -> None:
    job_id = start_job(cli, "place_order", {"order_id": "o-2"})
    bundle = json.loads(cli.ok("export", job_id, "-o", "-"))
    assert bundle["manifest"]["events"] >= 1
    assert not (HERE / "-").exists()
    done = cli("export", job_id, "-o", str(tmp_path / "missing" / "dir" / "x.json"))
    assert done.returncode == 2
    assert "does not exist" in done.stderr and "Traceback" not in done.stderr


def test_an_app_spec_with_a_typo_names_the_missing_attribute(cli: Cli) -> None:
    done = cli("start", "place_order", "--app", "acceptance_app:ap")
    assert done.returncode == 2
    assert "has no attribute 'ap'" in done.stderr


def test_start_warns_when_no_worker_ever_served_the_agent_and_wait_prints_the_id(
    cli: Cli, workers: Workers
) -> None:
    done = cli("start", "nobody_serves_this")
    assert done.returncode == 0
    assert "no worker has ever served agent 'nobody_serves_this'" in done.stderr
    workers.start()
    waited = cli("start", "place_order", "--input", '{"order_id": "o-3"}', "--wait")
    assert waited.returncode == 0, waited.stderr
    assert "started; waiting" in waited.stderr
    job_id = waited.stderr.split("job ", 1)[1].split()[0]
    assert cli.job(job_id)["status"] == "succeeded"
    assert "Exit codes" in cli("start", "--help").stdout


def test_operator_messages_say_what_happened(cli: Cli, workers: Workers) -> None:
    workers.start()
    job_id = start_job(cli, "reviewed_order", {"order_id": "o-4"})
    job = cli.wait_for(job_id, "parked")
    # A signal no wait of the job uses now: delivered, with a note.
    sent = cli("signal", job_id, "shipped", "--data", '{"parcel": 1}')
    assert sent.returncode == 0
    assert "not for signal 'shipped'" in sent.stderr
    # A mistyped args hash is not called a change of the request.
    wrong = cli("approve", job_id, "--args-hash", "0123456789abcdef")
    assert wrong.returncode == 1
    assert "check what you typed" in wrong.stderr
    assert job["park_detail"]["args_hash"] in wrong.stderr
    # Cancelling a parked job says that a cancel was requested, not that it "is pending".
    cancelled = cli.ok("cancel", job_id)
    assert "cancel requested" in cancelled and "is pending" not in cancelled
    cli.wait_for(job_id, "cancelled")


def test_by_is_the_login_name_when_user_is_unset(cli: Cli) -> None:
    job_id = start_job(cli, "place_order", {"order_id": "o-5"})
    env = {k: v for k, v in cli.env.items() if k not in ("USER", "LOGNAME")}
    done = subprocess.run(
        [AETHERIS, "signal", job_id, "note", "--json"],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    sender = json.loads(done.stdout)["sender"]
    assert sender not in (None, "None", "")


async def test_a_tool_argument_that_is_not_json_names_the_tool_and_position() -> None:
    app = App("memory://")

    @app.tool
    async def remember(thing: object) -> str:
        return "kept"

    @app.agent
    async def keeper(ctx: Context) -> str:
        return await remember(object())

    handle = await app.start("keeper")
    async with running_worker(app):
        job = await wait_for(app, handle.job_id, timeout=10)
    assert job.status is JobStatus.FAILED
    assert job.error is not None
    message = job.error["message"]
    assert "tool 'remember'" in message and "journal position 0" in message
    await app.close()


def test_the_demo_runs_from_any_folder(tmp_path: Path) -> None:
    """The README's demo: one database for the demo and its workers, wherever it is run from."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AETHERIS_DATABASE_URL", "DEMO_WORLD", "PYTHONPATH", "AETHERIS_CRASH_AT")
    }
    env["DEMO_WORLD"] = str(tmp_path / "world")
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "refund_demo.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "refunds paid for this job: 1" in done.stdout
    # Started outside the repository, the demo and its workers still share its database.
    assert f"sqlite:///{ROOT}/.aetheris/aetheris.db" in done.stdout
    assert not (tmp_path / ".aetheris").exists()
    refunds = (tmp_path / "world" / "payments.log").read_text().split()
    assert refunds[0].startswith("re_") and len(refunds[0]) == 13


def test_job_ids_may_be_shortened_to_a_unique_prefix(cli: Cli) -> None:
    first = start_job(cli, "place_order", {"order_id": "o-6"})
    second = start_job(cli, "place_order", {"order_id": "o-7"})
    shared = next(i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b)
    common, unique = first[:shared], first[: shared + 1]
    assert cli.json("jobs", "show", unique)["id"] == first
    assert cli.json("trace", unique)["job"]["id"] == first
    ambiguous = cli("jobs", "show", common)
    assert ambiguous.returncode == 2
    assert first in ambiguous.stderr and second in ambiguous.stderr
    unknown = cli("jobs", "show", "zzz")
    assert unknown.returncode == 1 and "zzz" in unknown.stderr


def test_jobs_list_filters_by_agent_time_and_error(cli: Cli, workers: Workers) -> None:
    workers.start()
    ok = start_job(cli, "place_order", {"order_id": "o-8"})
    bad_input = json.dumps({"order_id": "o-9", "quantity": "many"})
    bad = cli.ok("start", "place_order", "--input", bad_input).strip()  # fails on the worker
    cli.wait_for(ok)
    cli.wait_for(bad)
    by_agent = {j["id"] for j in cli.json("jobs", "list", "--agent", "place_order")}
    assert {ok, bad} <= by_agent
    assert cli.json("jobs", "list", "--agent", "slow_order") == []
    assert {j["id"] for j in cli.json("jobs", "list", "--since", "10m")} >= {ok, bad}
    assert cli.json("jobs", "list", "--since", "2000-01-01T00:00:00") != []
    failed = [j["id"] for j in cli.json("jobs", "list", "--error", "quantity")]
    assert failed == [bad]
    assert cli("jobs", "list", "--since", "yesterday").returncode == 2


def test_inbox_approvals_and_status_show_what_waits(cli: Cli, workers: Workers) -> None:
    workers.start()
    job_id = start_job(cli, "reviewed_order", {"order_id": "o-10"})
    parked = cli.wait_for(job_id, "parked")
    waiting = cli.json("approvals", "list")
    assert [r["job_id"] for r in waiting] == [job_id]
    assert waiting[0]["args_hash"] == parked["park_detail"]["args_hash"]
    assert f"aetheris approve {job_id}" in cli.ok("approvals", "list")
    cli.ok("signal", job_id, "shipped", "--data", '"parcel-1"')
    inbox = cli.json("jobs", "inbox", job_id)
    assert [(s["name"], s["payload"]) for s in inbox] == [("shipped", "parcel-1")]
    status = cli.json("status")
    assert status["database"] == cli.url
    assert status["jobs"]["parked"] == 1
    assert status["schema"]["version"] == status["schema"]["latest"]
    assert "reviewed_order" in status["agents"]
    assert [w["pid"] for w in status["workers"]] == [workers.started[0].proc.pid]
    text = cli.ok("status")
    assert cli.url in text and "1 parked" in text and "workers alive   1" in text


def test_listings_name_the_database_they_read(cli: Cli) -> None:
    start_job(cli, "place_order", {"order_id": "o-11"})
    assert f"database: {cli.url}" in cli.ok("jobs", "list")
    assert f"database: {cli.url}" in cli.ok("effects", "list")
