"""``aetheris.toml``: what it sets, and that options and AETHERIS_* variables win over it."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from aetheris.cli import config as project_config
from aetheris.cli import main
from aetheris.cli.project import render

TOML = """
app = "shop:app"
database_url = "sqlite:///from_file.db"
[server]
host = "::1"
port = 9999
[worker]
concurrency = 3
[model]
url = "http://127.0.0.1:1/v1"
model = "small"
script = "script.json"
"""


def test_the_file_gives_each_command_its_defaults(tmp_path: Path) -> None:
    (tmp_path / "aetheris.toml").write_text(TOML)
    settings = project_config.load(tmp_path)
    assert settings.database_url == "sqlite:///from_file.db"
    assert settings.model_script == tmp_path / "script.json"
    defaults = settings.default_map()
    assert defaults["worker"] == {"app_spec": "shop:app", "concurrency": 3}
    assert defaults["server"] == {"app_spec": "shop:app", "host": "::1", "port": 9999}
    assert defaults["run"] == {
        "app_spec": "shop:app",
        "host": "::1",
        "port": 9999,
        "concurrency": 3,
    }


def test_the_environment_wins_over_the_model_settings(tmp_path: Path) -> None:
    (tmp_path / "aetheris.toml").write_text(TOML)
    environ = {"AETHERIS_LLM_URL": "http://gpu:8000/v1"}
    project_config.load(tmp_path).apply_model_env(environ)
    assert environ == {"AETHERIS_LLM_URL": "http://gpu:8000/v1", "AETHERIS_LLM_MODEL": "small"}


def test_a_wrong_value_names_the_file_and_the_key(tmp_path: Path) -> None:
    (tmp_path / "aetheris.toml").write_text('[server]\nport = "80"\n')
    with pytest.raises(click.ClickException, match=r"aetheris.toml: server.port must be a whole"):
        project_config.load(tmp_path)
    (tmp_path / "aetheris.toml").write_text("app = \n")
    with pytest.raises(click.ClickException, match="cannot read"):
        project_config.load(tmp_path)


def test_no_file_no_settings(tmp_path: Path) -> None:
    assert project_config.load(tmp_path) == project_config.ProjectConfig()


def test_the_generated_file_parses(tmp_path: Path) -> None:
    (tmp_path / "aetheris.toml").write_text(render("shop")["aetheris.toml"])
    settings = project_config.load(tmp_path)
    assert (settings.app, settings.port, settings.model_url) == ("app:app", 8080, None)
    assert settings.database_url == "sqlite:///.aetheris/aetheris.db"


def test_commands_use_the_file_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "aetheris.toml").write_text('database_url = "sqlite:///from_file.db"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AETHERIS_DATABASE_URL", raising=False)
    runner = CliRunner()
    done = runner.invoke(main, ["jobs", "list"])
    assert "from_file.db" in done.output
    done = runner.invoke(main, ["jobs", "list"], env={"AETHERIS_DATABASE_URL": "sqlite:///e.db"})
    assert "e.db" in done.output and "from_file" not in done.output
    done = runner.invoke(main, ["jobs", "list", "--database-url", "sqlite:///o.db"])
    assert "o.db" in done.output and "from_file" not in done.output
    assert not (tmp_path / "from_file.db").exists()  # a read command creates nothing


def test_option_defaults_come_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "aetheris.toml").write_text("[server]\nport = 9999\n")
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(main, ["server", "--help"], terminal_width=200)
    assert "[default: 9999;" in done.output


def test_retention_from_the_file_reaches_the_worker_and_db_prune(tmp_path: Path) -> None:
    (tmp_path / "aetheris.toml").write_text('[retention]\nolder_than = "30d"\n')
    defaults = project_config.load(tmp_path).default_map()
    assert defaults["worker"] == {"retention": "30d"}
    assert defaults["db"] == {"prune": {"older_than": "30d"}}
    (tmp_path / "aetheris.toml").write_text('[retention]\nolder_than = "a month"\n')
    with pytest.raises(
        click.ClickException, match=r"aetheris.toml: retention.older_than: 'a month'"
    ):
        project_config.load(tmp_path)
