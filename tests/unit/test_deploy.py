"""The Grafana dashboard and the Prometheus alert rules in ``deploy/`` speak of metrics the
code exports, and nothing else: a renamed metric breaks this test, not a dashboard in
production."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from aetheris.metrics import NAMES

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "aetheris.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
METRIC = re.compile(r"\baetheris_[a-z0-9_]+\b")
HISTOGRAM_SAMPLES = ("_bucket", "_sum", "_count")


def family(name: str) -> str:
    """The family a sample name belongs to (a histogram's ``_bucket`` is its family's)."""
    for suffix in HISTOGRAM_SAMPLES:
        if name.endswith(suffix) and name.removesuffix(suffix) in NAMES:
            return name.removesuffix(suffix)
    return name


def expressions(node: Any) -> list[str]:
    """Every ``expr`` and ``query`` string in a JSON or YAML document."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "query", "definition") and isinstance(value, str):
                found.append(value)
            else:
                found += expressions(value)
    elif isinstance(node, list):
        for item in node:
            found += expressions(item)
    return found


def named_in(exprs: list[str]) -> set[str]:
    return {family(name) for expr in exprs for name in METRIC.findall(expr)}


def test_the_dashboard_names_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    exprs = expressions(dashboard["panels"]) + expressions(dashboard["templating"])
    assert len(exprs) > 20
    used = named_in(exprs)
    assert used <= NAMES, f"not exported: {sorted(used - NAMES)}"
    # The headline series are on it.
    assert {"aetheris_effects", "aetheris_queue_oldest_pending_age_seconds"} <= used
    assert {"aetheris_operation_duration_seconds", "aetheris_llm_tokens_total"} <= used
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_the_alert_rules_name_only_exported_metrics() -> None:
    rules = [r for g in yaml.safe_load(ALERTS.read_text("utf-8"))["groups"] for r in g["rules"]]
    names = {r["alert"] for r in rules}
    assert {"AetherisEffectsInDoubt", "AetherisLeasesExpired", "AetherisQueueAging"} <= names
    used = named_in([r["expr"] for r in rules])
    assert used <= NAMES, f"not exported: {sorted(used - NAMES)}"
    for rule in rules:
        assert rule["labels"]["severity"] in ("page", "warning"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_a_name_that_is_not_exported_is_caught() -> None:
    assert named_in(["rate(aetheris_nope_total[5m])"]) - NAMES == {"aetheris_nope_total"}
    assert named_in(["sum(rate(aetheris_operation_duration_seconds_bucket[5m]))"]) <= NAMES
