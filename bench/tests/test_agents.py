"""A1/A2's harness pieces: the scripted conversation, its call counts, the rows, the agents
themselves run plain (no durability), and one tiny durable A1 job on SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import agent_workloads
from bench.peers import agent_script, common
from bench.suite import report, runner


def test_the_prompt_carries_the_number_of_turns() -> None:
    assert agent_script.turns_in(agent_script.prompt(17)) == 17
    with pytest.raises(ValueError, match="no turns=N"):
        agent_script.turns_in("hello")
    assert [agent_script.tool_for(t) for t in range(4)] == ["lookup", "reserve", "charge", "lookup"]


def test_duplicates_count_the_at_most_once_tool_the_model_and_the_rest() -> None:
    once = ["model 0", "lookup 0", "model 1", "reserve 1", "model 2", "charge 2"]
    log = "\n".join([*once, *once, "model 3"])
    found = agent_script.duplicates(log, turn=2)
    assert found["model_runs_for_turn"] == 2
    assert found["charge_runs_for_turn"] == 2
    assert found["dup_charge_calls"] == 1
    assert found["dup_model_calls"] == 3
    assert found["dup_tool_calls"] == 3  # lookup, reserve and charge once more each
    assert found["ran_more_than_once"] == [
        "charge 2",
        "lookup 0",
        "model 0",
        "model 1",
        "model 2",
        "reserve 1",
    ]


def test_a_clean_log_has_no_duplicates() -> None:
    found = agent_script.duplicates("model 5\ncharge 5\nmodel 6\n")
    assert (found["dup_charge_calls"], found["dup_model_calls"]) == (0, 0)
    assert found["ran_more_than_once"] == []


def test_agent_rows_give_every_metric_and_the_overhead_above_the_plain_run() -> None:
    kill = agent_script.duplicates("model 5\ncharge 5\ncharge 5\n") | {"what": "it completed"}
    rows = common.agent_rows(
        "X", "an agent", "N=20", {"us_per_turn": 30.0}, {"us_per_turn": 10.0}, {"bytes": 5}, kill
    )
    assert [metric for _, metric, *_ in rows] == list(common.AGENT_METRICS)
    values = {metric: value for _, metric, value, *_ in rows}
    assert values["overhead_us_per_turn"] == 20.0
    assert values["dup_charge_calls"] == 1.0
    assert "charge of turn 5 ran 2x" in rows[-1][3]


def test_a_system_without_a_backend_for_the_framework_is_not_run() -> None:
    reason = runner.not_applicable(runner.Case("restate", "A1", "server", "full"))
    assert reason is not None
    assert reason.startswith("not applicable: ")
    assert runner.not_applicable(runner.Case("dbos", "A1", "sqlite", "full")) is None
    assert runner.not_applicable(runner.Case("dbos", "A2", "sqlite", "full")) is not None
    assert runner.not_applicable(runner.Case("restate", "W4", "server", "full")) is None
    assert set(common.AGENT_SYSTEMS["A1"]) == set(common.AGENT_SYSTEMS["A2"])


def test_peers_are_compared_with_the_aetheris_variant_of_their_framework() -> None:
    assert report.reference_variant("A1", "DBOSDurability") == "AetherisDurability"
    assert report.reference_variant("A1", "plain") == "plain"
    assert report.reference_variant("A2", "checkpointer-async") == "AetherisCheckpointer"
    assert {"dup_charge_calls", "dup_model_calls"} <= report.NO_RATIO


def test_a_negative_overhead_gets_no_ratio() -> None:
    rows = [
        {"system": s, "workload": "A1", "variant": v, "backend": "sqlite", "durability": "full"}
        | {"metric": "overhead_us_per_turn", "value": x, "run": 1, "notes": ""}
        for s, v, x in (("aetheris", "AetherisDurability", -5.0), ("dbos", "DBOSDurability", 9.0))
    ]
    groups = report.group(rows)
    assert all(g.ratio is None for g in groups)


async def test_the_plain_agents_run_their_turns_and_count_their_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(agent_script.WORLD_ENV, str(tmp_path))
    for workload in ("A1", "A2"):
        (tmp_path / "calls.log").unlink(missing_ok=True)
        record = await agent_workloads.plain(workload, turns=4, repeats=1)
        assert record["us_per_turn"] > 0
        calls = (tmp_path / "calls.log").read_text().split("\n")
        # a warm-up and a timed run, each: 5 model requests and 4 tool calls
        assert calls.count("model 4") == 2
        assert calls.count("charge 2") == 2
        assert agent_script.duplicates("\n".join(calls[:9]))["calls"] == 9


async def test_a_durable_a1_job_is_timed_inside_the_agent(tmp_path: Path) -> None:
    record = await agent_workloads.durable(f"sqlite:///{tmp_path / 'a1.db'}", "A1", 2, 1)
    assert record["us_per_turn"] > 0
    assert len(record["runs_s"]) == 1
