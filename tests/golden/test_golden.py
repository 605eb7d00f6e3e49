"""Saved journals of real runs, replayed against today's code.

A change that makes the code diverge from these journals would park every such job in
production with reason ``nondeterminism``: it must be a deliberate, visible decision. One
journal was recorded by an earlier version of ``refund_order`` (``record.py``) and must be
reported as diverging, with the line of today's code that asked for something else.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from aetheris import App, Context
from aetheris.bundle import BundleError, load_bundle, read_bundle
from aetheris.errors import ReplayFailed
from aetheris.recording import load_journal
from aetheris.replay import replay_history
from aetheris.testing import Replayer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
GOLDEN = {
    # a refund whose worker was SIGKILLed while emailing, resumed by a fresh worker
    "refund_order_killed_and_resumed.json": "examples.refund.app",
    # an order whose charge was in doubt after a crash, resolved by an operator
    "order_in_doubt_resolved.json": "tests.chaos.chaos_app",
    # refund_order as it was before the refund moved ahead of the email (record.py)
    "refund_order_v0_emails_first.json": "examples.refund.app",
}
DIVERGES = {"refund_order_v0_emails_first.json"}


def app_of(module: str) -> App:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    found: App = importlib.import_module(module).app
    return found


def test_every_golden_file_is_listed() -> None:
    assert {p.name for p in HERE.glob("*.json")} == set(GOLDEN)


@pytest.mark.parametrize("name", sorted(set(GOLDEN) - DIVERGES))
async def test_golden_journal_replays(name: str) -> None:
    (report,) = await Replayer(app_of(GOLDEN[name])).replay_all(HERE / name)
    assert report.outcome == "matched", report
    assert report.recorded_end is not None and report.recorded_end["type"] == "job_succeeded"


async def test_a_journal_of_earlier_code_is_reported_where_it_diverges() -> None:
    report = await Replayer(app_of("examples.refund.app")).replay(
        HERE / "refund_order_v0_emails_first.json"
    )
    assert (report.outcome, report.position, report.ok) == ("diverged", 1, False)
    assert report.diff is not None
    assert "journal: tool send_email" in report.diff and "code:    tool refund_card" in report.diff
    # the line of today's code that asked for the refund where the journal holds the email
    assert report.location is not None and report.location.endswith(" in refund_order")
    path, line = report.location.split(" in ")[0].rsplit(":", 1)
    source = (ROOT / path).read_text().splitlines()[int(line) - 1]
    assert "refund_card(" in source and path.endswith("examples/refund/app.py")


def test_the_replayer_names_every_journal_that_fails() -> None:
    replayer = Replayer(app_of("examples.refund.app"))
    with pytest.raises(ReplayFailed) as caught:
        replayer.check(HERE)
    message = str(caught.value)
    assert message.startswith("2 of 3 saved journals do not replay against this code:")
    assert "refund_order_v0_emails_first.json" in message and "diverged at position 1" in message
    assert "order_in_doubt_resolved.json" in message and "unknown_agent" in message
    outcomes = {r.source.rsplit("/", 1)[-1]: r.outcome for r in caught.value.reports}
    assert outcomes["refund_order_killed_and_resumed.json"] == "matched"


def test_a_saved_journal_edited_or_cut_short_is_refused(tmp_path: Path) -> None:
    doc = json.loads((HERE / "refund_order_v0_emails_first.json").read_text())
    edited = json.loads(json.dumps(doc))
    edited["events"][3]["data"]["name"] = "refund_card"
    cut = {**doc, "events": doc["events"][:-1]}
    for name, changed in (("edited.json", edited), ("cut.json", cut)):
        (tmp_path / name).write_text(json.dumps(changed))
        with pytest.raises(BundleError, match="do not hash to the saved head"):
            load_journal(tmp_path / name)
    (tmp_path / "not.json").write_text("{")
    with pytest.raises(BundleError, match="not JSON"):
        load_journal(tmp_path / "not.json")


async def test_changed_code_diverges_from_a_golden_journal() -> None:
    bundle = load_bundle(HERE / "refund_order_killed_and_resumed.json")
    changed = App("memory://")

    @changed.agent(name="refund_order")
    async def refund_order(ctx: Context, order_id: str, reason: str) -> None:
        await ctx.step("lookup_order", lambda: None)

    report = await replay_history(changed, bundle.job, bundle.events, bundle.effects)
    assert report.outcome == "diverged"
    assert report.diff is not None and "journal: tool lookup_order" in report.diff


def test_an_edited_bundle_is_refused() -> None:
    doc = json.loads((HERE / "refund_order_killed_and_resumed.json").read_text())
    doc["events"][4]["body"] = doc["events"][4]["body"].replace("re_", "rf_")
    with pytest.raises(BundleError, match="hash chain broken at seq 4"):
        read_bundle(doc)
