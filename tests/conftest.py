from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aetheris.store import create_store
from aetheris.store.port import Store

STORE_KINDS = ["memory", "sqlite"]


def store_url_for(kind: str, tmp_path: Path) -> str:
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'aetheris.db'}"
    raise ValueError(kind)


@pytest.fixture(params=STORE_KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return store_url_for(request.param, tmp_path)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'aetheris.db'}"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = create_store(store_url)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture(autouse=True)
def _no_ambient_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never touch a developer's AETHERIS_DATABASE_URL or a crash plan by accident."""
    monkeypatch.delenv("AETHERIS_DATABASE_URL", raising=False)
    monkeypatch.delenv("AETHERIS_CRASH_AT", raising=False)


def pytest_report_header() -> list[str]:
    return [f"aetheris stores under test: {', '.join(STORE_KINDS)}", f"cwd: {os.getcwd()}"]
