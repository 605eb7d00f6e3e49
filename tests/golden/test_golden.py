"""Saved journals of real runs, replayed against today's code.

A change that makes the code diverge from these journals would park every such job in
production with reason ``nondeterminism``: it must be a deliberate, visible decision.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from aetheris import App, Context
from aetheris.bundle import BundleError, load_bundle, read_bundle
from aetheris.replay import replay_history

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
GOLDEN = {
    # a refund whose worker was SIGKILLed while emailing, resumed by a fresh worker
    "refund_order_killed_and_resumed.json": "examples.refund.app",
    # an order whose charge was in doubt after a crash, resolved by an operator
    "order_in_doubt_resolved.json": "tests.chaos.chaos_app",
}


def app_of(module: str) -> App:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    found: App = importlib.import_module(module).app
    return found


def test_every_golden_file_is_listed() -> None:
    assert {p.name for p in HERE.glob("*.json")} == set(GOLDEN)


@pytest.mark.parametrize("name", sorted(GOLDEN))
async def test_golden_journal_replays(name: str) -> None:
    bundle = load_bundle(HERE / name)
    report = await replay_history(app_of(GOLDEN[name]), bundle.job, bundle.events, bundle.effects)
    assert report.outcome == "matched", report
    assert report.recorded_end is not None and report.recorded_end["type"] == "job_succeeded"


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
