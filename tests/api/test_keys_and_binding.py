"""Keys are shown once and stored as a hash; the server never serves without auth off
loopback."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from aetheris.api.server import check_binding, is_loopback
from aetheris.cli import main
from aetheris.errors import ConfigurationError, InvalidInput
from aetheris.keys import actor, authenticate, create_key
from aetheris.store import create_store


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2", "[::1]"])
def test_loopback_addresses_may_serve_without_auth(host: str) -> None:
    assert is_loopback(host)
    check_binding(host, auth=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "example.invalid"])
def test_other_addresses_refuse_to_serve_without_auth(host: str) -> None:
    with pytest.raises(ConfigurationError, match="auth disabled"):
        check_binding(host, auth=False)
    check_binding(host, auth=True)


def test_the_cli_refuses_no_auth_off_loopback() -> None:
    done = CliRunner().invoke(main, ["server", "--host", "0.0.0.0", "--no-auth"])
    assert done.exit_code == 2 and "auth disabled" in done.output


async def test_a_key_is_stored_as_its_hash_and_checked_whole() -> None:
    store = create_store("memory://")
    key, token = await create_key(store, "approver", "acme", name="alice")
    assert token.startswith(f"ak_{key.id}_") and len(token) > 50
    stored = await store.api_key(key.id)
    assert stored is not None and stored.secret_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(stored)
    assert await authenticate(store, token) == stored
    assert await authenticate(store, token + "x") is None
    assert await authenticate(store, token.replace("ak_", "xx_")) is None
    assert actor(key) == f"key:{key.id} (approver)"
    with pytest.raises(InvalidInput):
        await create_key(store, "root", "acme")


def test_keys_create_list_revoke_on_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/k.db"
    runner = CliRunner()
    created = runner.invoke(main, ["--database-url", url, "keys", "create", "--role", "viewer",
                                   "--tenant", "acme", "--json"])  # fmt: skip
    assert created.exit_code == 0, created.output
    doc = json.loads(created.output)
    assert doc["key"].startswith("ak_") and doc["role"] == "viewer"
    listed = runner.invoke(main, ["--database-url", url, "keys", "list", "--json"])
    assert [k["id"] for k in json.loads(listed.output)] == [doc["id"]]
    assert doc["key"] not in listed.output
    revoked = runner.invoke(main, ["--database-url", url, "keys", "revoke", doc["id"], "--json"])
    assert revoked.exit_code == 0 and json.loads(revoked.output)["revoked_at"] is not None
    missing = runner.invoke(main, ["--database-url", url, "keys", "revoke", "nope"])
    assert missing.exit_code == 1
