"""The PostgreSQL store's pool options: where sizes come from, and bad ones named."""

from __future__ import annotations

import pytest

from aetheris.errors import ConfigurationError
from aetheris.store.postgres_pooling import for_process, pooling_from, with_application_name
from aetheris.store.postgres_session import split_options

URL = "postgresql://u@db:5432/app"


def pooling(url: str, **environ: str) -> tuple[int, int, str]:
    _, options = split_options(url)
    found = pooling_from(options, 1, 10, environ)
    assert not options  # every pool option was taken
    return found.min_size, found.max_size, found.pgbouncer


def test_the_url_wins_over_the_environment_which_wins_over_the_defaults() -> None:
    assert pooling(URL) == (1, 10, "auto")
    assert pooling(URL, AETHERIS_PG_POOL_MIN="2", AETHERIS_PG_POOL_MAX="5") == (2, 5, "auto")
    both = f"{URL}?aetheris_pool_min=0&aetheris_pool_max=3&aetheris_pgbouncer=Transaction"
    assert pooling(both, AETHERIS_PG_POOL_MAX="5") == (0, 3, "transaction")
    assert pooling(f"{URL}?aetheris_max_connections=4") == (1, 4, "auto")  # the older name


@pytest.mark.parametrize(
    ("url", "environ", "message"),
    [
        (f"{URL}?aetheris_pool_max=many", {}, "?aetheris_pool_max='many' is not a whole number"),
        (URL, {"AETHERIS_PG_POOL_MIN": "x"}, "AETHERIS_PG_POOL_MIN='x' is not a whole number"),
        (f"{URL}?aetheris_pool_min=5&aetheris_pool_max=2", {}, "pool_min=5, pool_max=2"),
        (f"{URL}?aetheris_pool_max=0", {}, "pool_max >= 1"),
        (f"{URL}?aetheris_pgbouncer=statement", {}, "statement pooling mode"),
        (f"{URL}?aetheris_pgbouncer=yes", {}, "expected one of auto, none, session"),
    ],
)
def test_bad_pool_options_are_refused_by_name(
    url: str, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        pooling(url, **environ)
    assert message in str(refused.value)


def test_processes_name_themselves_unless_the_url_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGAPPNAME", raising=False)
    assert with_application_name(URL) == f"{URL}?application_name=aetheris"
    named = f"{URL}?application_name=billing"
    assert with_application_name(named) == named
    worker = for_process(f"{URL}?aetheris_pool_max=9", "aetheris-worker", 3)
    assert worker == f"{URL}?application_name=aetheris-worker&aetheris_pool_max=3"
    assert for_process("sqlite:///a.db", "aetheris-worker", 3) == "sqlite:///a.db"
    monkeypatch.setenv("PGAPPNAME", "ops")
    assert with_application_name(URL) == URL
