"""A real PgBouncer (Debian's ``pgbouncer``) in front of the test PostgreSQL server, started on a
free port by the test that needs it: one way to start it."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import IN_CI, PG_URL

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def require_pgbouncer() -> None:
    """Skip (or, under CI=true, fail) when Debian's pgbouncer is not installed."""
    if Path(PGBOUNCER).exists():
        return
    reason = f"pgbouncer is not installed at {PGBOUNCER} (apt-get install pgbouncer)"
    if IN_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def pgbouncer(pool_mode: str, database: str) -> Iterator[str]:
    """PgBouncer in ``pool_mode`` for every database of the test server; yields the URL of
    ``database`` through it. Trust authentication, as the test server has."""
    require_pgbouncer()
    upstream = urlsplit(PG_URL)
    user = upstream.username or "postgres"
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="aetheris-pgbouncer-"))
    folder.chmod(0o755)  # pgbouncer drops root for the postgres user, who reads these
    (folder / "users.txt").write_text(f'"{user}" ""\n')
    settings = [
        "[databases]",
        f"* = host={upstream.hostname or '127.0.0.1'} port={upstream.port or 5432}",
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {port}",
        "auth_type = trust",
        f"auth_file = {folder / 'users.txt'}",
        f"pool_mode = {pool_mode}",
        "default_pool_size = 20",
        "max_client_conn = 500",
        "unix_socket_dir =",
    ]
    if os.geteuid() == 0:
        settings.append("user = postgres")  # pgbouncer refuses to run as root
    (folder / "pgbouncer.ini").write_text("\n".join(settings) + "\n")
    for name in ("users.txt", "pgbouncer.ini"):
        (folder / name).chmod(0o644)
    log = (folder / "pgbouncer.log").open("wb")
    proc = subprocess.Popen(
        [PGBOUNCER, str(folder / "pgbouncer.ini")], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        _wait_listening(port, proc, folder / "pgbouncer.log")
        yield f"postgresql://{user}@127.0.0.1:{port}/{database}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"pgbouncer did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
