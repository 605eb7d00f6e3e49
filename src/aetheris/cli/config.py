"""``aetheris.toml``: a project's settings, read by every command run in its folder.

What it holds, and who wins (first wins):

==================  ==================================  ===========================================
setting             command line / environment          aetheris.toml
==================  ==================================  ===========================================
database            ``--database-url``,                 ``database_url``
                    ``AETHERIS_DATABASE_URL``
the App             ``--app``                           ``app`` (``run``, ``worker``, ``server``,
                                                        ``replay``)
server address      ``--host``, ``--port``              ``[server] host``, ``port``
worker              ``--concurrency``                   ``[worker] concurrency``
retention           ``--retention`` (worker),           ``[retention] older_than`` (``"30d"``)
                    ``--older-than`` (db prune),
                    ``AETHERIS_RETENTION``
model               ``AETHERIS_LLM_URL``,               ``[model] url``, ``model``; ``script``: the
                    ``AETHERIS_LLM_MODEL``              scripted model ``aetheris run`` serves when
                                                        no url is set
MCP servers         (the App's own, in Python)          ``[mcp.servers.NAME]``: ``command`` or
                                                        ``url``, ``env``, ``effects``, ``approval``,
                                                        ``rate_limits``, ... (added to the App)
==================  ==================================  ===========================================

Options reach the commands as click's ``default_map`` (so an option given, or its own
environment variable, wins); the model settings become ``AETHERIS_LLM_*`` environment
variables unless those are set already, which is where :class:`aetheris.llm.ChatModel` and
the worker's children read them. Only the working directory is looked at, never its parents.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from aetheris.errors import ConfigurationError
from aetheris.retention import parse_age

FILENAME = "aetheris.toml"


@dataclass(frozen=True)
class ProjectConfig:
    """The settings of one ``aetheris.toml`` (all optional), and where it was."""

    path: Path | None = None
    app: str | None = None
    database_url: str | None = None
    host: str | None = None
    port: int | None = None
    concurrency: int | None = None
    retention: str | None = None
    model_url: str | None = None
    model: str | None = None
    model_script: Path | None = None
    mcp_servers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def default_map(self) -> dict[str, dict[str, Any]]:
        """Option defaults per command, for click."""
        given = {
            "app_spec": self.app,
            "host": self.host,
            "port": self.port,
            "concurrency": self.concurrency,
        }
        wanted = {
            "run": ("app_spec", "host", "port", "concurrency"),
            "worker": ("app_spec", "concurrency"),
            "server": ("app_spec", "host", "port"),
            "replay": ("app_spec",),
        }
        defaults: dict[str, dict[str, Any]] = {
            command: {k: given[k] for k in keys if given[k] is not None}
            for command, keys in wanted.items()
        }
        if self.retention is not None:
            defaults["worker"]["retention"] = self.retention
            defaults["db"] = {"prune": {"older_than": self.retention}}
        return defaults

    def apply_model_env(self, environ: MutableMapping[str, str] = os.environ) -> None:
        """``AETHERIS_LLM_URL`` and ``AETHERIS_LLM_MODEL`` from the file, unless set."""
        pairs = (("AETHERIS_LLM_URL", self.model_url), ("AETHERIS_LLM_MODEL", self.model))
        for name, value in pairs:
            if value and not environ.get(name):
                environ[name] = value


def load(folder: Path | None = None) -> ProjectConfig:
    """The ``aetheris.toml`` of ``folder`` (the working directory), or empty settings."""
    path = (folder or Path.cwd()) / FILENAME
    if not path.is_file():
        return ProjectConfig()
    try:
        raw = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
    return parse(raw, path)


def parse(raw: dict[str, Any], path: Path) -> ProjectConfig:
    """Check the file's values: a wrong type is an error naming the file and the key."""
    server, worker, model, retention = (
        _table(raw, name, path) for name in ("server", "worker", "model", "retention")
    )
    script = _get(model, "script", str, path, "model.")
    return ProjectConfig(
        path=path,
        app=_get(raw, "app", str, path),
        database_url=_get(raw, "database_url", str, path),
        host=_get(server, "host", str, path, "server."),
        port=_get(server, "port", int, path, "server."),
        concurrency=_get(worker, "concurrency", int, path, "worker."),
        retention=_age(_get(retention, "older_than", str, path, "retention."), path),
        model_url=_get(model, "url", str, path, "model."),
        model=_get(model, "model", str, path, "model."),
        model_script=(path.parent / script) if script else None,
        mcp_servers=_mcp_servers(raw, path),
    )


def _age(value: str | None, path: Path) -> str | None:
    """``[retention] older_than``, checked now: a bad one names the file."""
    if value is not None:
        try:
            parse_age(value, "retention.older_than")
        except ConfigurationError as exc:
            raise click.ClickException(f"{path}: {exc}") from None
    return value


def _mcp_servers(raw: dict[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    """The ``[mcp.servers.NAME]`` tables, checked in depth where the App gets them."""
    servers = _table(_table(raw, "mcp", path), "servers", path)
    for name, table in servers.items():
        if not isinstance(table, dict):
            raise click.ClickException(f"{path}: [mcp.servers.{name}] must be a table")
    return servers


def _table(raw: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    table = raw.get(name, {})
    if not isinstance(table, dict):
        raise click.ClickException(f"{path}: [{name}] must be a table")
    return table


def _get(table: dict[str, Any], key: str, kind: type, path: Path, prefix: str = "") -> Any:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise click.ClickException(
            f"{path}: {prefix}{key} must be {'text' if kind is str else 'a whole number'}, "
            f"got {value!r}"
        )
    return value
