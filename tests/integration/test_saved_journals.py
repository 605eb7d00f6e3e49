"""Saved journals through the CLI: ``aetheris export ID --journal`` and ``aetheris replay
--journal FILE`` on a SQLite database, against the code of ``examples/refund``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner, Result

from aetheris import App
from aetheris.cli import main
from aetheris.recording import load_journal
from aetheris.testing import running_worker
from tests.golden.record import emails_first

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
REFUND = "examples.refund.app:app"


def _cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _recorded(url: str) -> tuple[str, list[str]]:
    async def go() -> tuple[str, list[str]]:
        app = App(url)
        emails_first(app)
        try:
            async with running_worker(app, poll_interval=0.01):
                handle = await app.start("refund_order", {"order_id": "o-7", "reason": "late"})
                await handle.result(timeout=30)
            events = await (await app.open_store()).events(handle.job_id)
            return handle.job_id, [e.hash for e in events]
        finally:
            await app.close()

    return asyncio.run(go())


def test_an_exported_journal_replays_from_its_file_and_names_the_divergence(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/j.db"
    job_id, hashes = _recorded(url)
    saved = tmp_path / "journal.json"
    out = _cli("--database-url", url, "export", job_id[:8], "--journal", "-o", str(saved))
    assert out.exit_code == 0, out.output
    assert out.output.startswith(f"wrote {saved}: {len(hashes)} events, head {hashes[-1]}")
    assert [e.hash for e in load_journal(saved).events] == hashes
    doc = json.loads(saved.read_text())
    assert doc["format"] == "aetheris-journal/1" and doc["events"][2]["data"]["kind"] == "tool"

    out = _cli("replay", "--app", REFUND, "--journal", str(saved))
    assert out.exit_code == 1, out.output
    assert f"{saved}: diverged: 3 recorded operations" in out.output
    assert "at:      examples/refund/app.py:" in out.output

    key = tmp_path / "k.pem"
    assert _cli("keys", "signing", "create", "-o", str(key)).exit_code == 0
    out = _cli("--database-url", url, "export", job_id, "--journal", "--sign", str(key), "-o", "-")
    assert out.exit_code == 2 and "a saved journal is not signed" in out.output


def test_a_journal_that_replays_exits_zero_and_json_lists_each_report() -> None:
    out = _cli(
        "replay", "--app", REFUND, "--journal", str(GOLDEN / "refund_order_killed_and_resumed.json")
    )
    assert out.exit_code == 0, out.output
    assert "matched: 4 recorded operations" in out.output
    out = _cli(
        "replay",
        "--app",
        REFUND,
        "--json",
        "--journal",
        str(GOLDEN),
        "--journal",
        str(GOLDEN / "refund_order_killed_and_resumed.json"),
    )
    assert out.exit_code == 1
    reports = json.loads(out.output)
    assert [r["outcome"] for r in reports] == ["unknown_agent", "matched", "diverged", "matched"]
    assert reports[2]["position"] == 1 and reports[2]["location"].endswith("in refund_order")


def test_replay_wants_a_job_or_journals() -> None:
    out = _cli("replay", "--app", REFUND)
    assert out.exit_code == 2 and "give a JOB_ID or --journal FILE" in out.output
