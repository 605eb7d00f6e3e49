"""Every module of the benchmark imports: the Aetheris side and the suite for real; a peer's
module only where its framework is installed (each peer has its own venv, bench/.venvs/<peer>)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import bench

OPTIONAL = {  # module: the third-party package it imports at its top level
    "bench.peers.absurd": "absurd_sdk",
    "bench.peers.absurd_worker": "absurd_sdk",
    "bench.peers.dbos_agent_worker": "dbos",
    "bench.peers.dbos_worker": "dbos",
    "bench.peers.langgraph": "langgraph",
    "bench.peers.langgraph_agent": "langgraph",
    "bench.peers.langgraph_agents": "langgraph",
    "bench.peers.langgraph_graphs": "langgraph",
    "bench.peers.langgraph_worker": "langgraph",
    "bench.peers.pydantic_agent": "pydantic_ai",
    "bench.peers.restate_service": "restate",
    "bench.peers.temporal": "temporalio",
    "bench.peers.temporal_acts": "temporalio",
    "bench.peers.temporal_agent_flows": "temporalio",
    "bench.peers.temporal_agent_worker": "temporalio",
    "bench.peers.temporal_agents": "temporalio",
    "bench.peers.temporal_flows": "temporalio",
    "bench.peers.temporal_stack": "temporalio",
    "bench.peers.temporal_worker": "temporalio",
    "bench.suite.chart": "matplotlib",
}
REQUIRED = [
    "bench.__main__",
    "bench.agent_app",
    "bench.agent_workloads",
    "bench.anchor",
    "bench.app",
    "bench.codec",
    "bench.core",
    "bench.floor",
    "bench.harness",
    "bench.history",
    "bench.history_fill",
    "bench.peers",
    "bench.peers.aetheris",
    "bench.peers.agent_script",
    "bench.peers.common",
    "bench.peers.dbos",
    "bench.peers.restate",
    "bench.overhead",
    "bench.profile",
    "bench.prune",
    "bench.suite",
    "bench.suite.markdown",
    "bench.suite.report",
    "bench.suite.runner",
    "bench.suite.venvs",
    "bench.workers",
    "bench.workers_probe",
    "bench.workloads",
]


def test_every_module_is_listed() -> None:
    found = {
        module.name
        for module in pkgutil.walk_packages(bench.__path__, "bench.")
        if not module.name.startswith("bench.tests")
    }
    assert found == set(REQUIRED) | set(OPTIONAL)


@pytest.mark.parametrize("name", REQUIRED)
def test_imports(name: str) -> None:
    importlib.import_module(name)


@pytest.mark.parametrize("name", sorted(OPTIONAL))
def test_imports_where_its_framework_is_installed(name: str) -> None:
    package = OPTIONAL[name]
    pytest.importorskip(
        package, reason=f"{package} is installed in its own venv (bench/.venvs), not here"
    )
    importlib.import_module(name)
