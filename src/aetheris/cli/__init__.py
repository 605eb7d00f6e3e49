"""The ``aetheris`` command: a thin shell over the public Python API.

Every command reads the database from ``--database-url`` or ``AETHERIS_DATABASE_URL``; every read
command has ``--json`` with a stable schema (see :mod:`aetheris.cli.render`). The commands live
in :mod:`.running` (worker, start), :mod:`.reads` (what happened), :mod:`.actions` (what
operators do) and :mod:`.serving` (the HTTP server and its keys); importing them registers
them on the group in :mod:`.base`.
"""

from aetheris.cli import actions, reads, running, serving
from aetheris.cli.base import main

__all__ = ["actions", "main", "reads", "running", "serving"]
