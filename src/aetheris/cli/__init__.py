"""The ``aetheris`` command: a thin shell over the public Python API.

Every command reads the database from ``--database-url`` or ``AETHERIS_DATABASE_URL``; every read
command has ``--json`` with a stable schema (see :mod:`aetheris.cli.render`). The commands live
in :mod:`.running` (worker, start), :mod:`.reads` (what happened), :mod:`.evidence` (verify,
export, signing keys), :mod:`.actions` (what operators do), :mod:`.retention` (db prune),
:mod:`.serving` (the HTTP server and its keys), :mod:`.project` (init), :mod:`.supervisor`
(run: server and worker for development), :mod:`.talk` (chat), :mod:`.timetravel` (fork,
diff), :mod:`.tooling` (the tool registry), :mod:`.webhooks` (outgoing webhooks) and
:mod:`.mcp_serve` (Aetheris as an MCP server);
importing them registers them on the group in :mod:`.base`. :mod:`.config` reads a
project's ``aetheris.toml``.
"""

from aetheris.cli import (
    actions,
    evidence,
    mcp_serve,
    project,
    reads,
    retention,
    running,
    serving,
    supervisor,
    talk,
    timetravel,
    tooling,
    webhooks,
)
from aetheris.cli.base import main

__all__ = [
    "actions",
    "evidence",
    "main",
    "mcp_serve",
    "project",
    "reads",
    "retention",
    "running",
    "serving",
    "supervisor",
    "talk",
    "timetravel",
    "tooling",
    "webhooks",
]
