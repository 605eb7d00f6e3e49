"""API keys: made here, shown once, stored as a hash, checked in constant time.

A key reads ``ak_<id>_<secret>``: the id finds its row (so a check is one lookup, not a scan),
and the secret is 256 random bits, so a plain sha256 of the whole key is enough (no slow
password hash is needed for a secret nobody chose). Only that hash is stored; a lost key is
revoked and replaced, never shown again.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from aetheris.clock import SYSTEM_CLOCK, Clock
from aetheris.errors import InvalidInput
from aetheris.journal import check_text
from aetheris.store.port import ApiKey, Role, Store

PREFIX = "ak"


def key_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def parse_role(role: str | Role) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise InvalidInput(
            f"role must be one of {', '.join(r.value for r in Role)}, got {role!r}"
        ) from None


async def create_key(
    store: Store,
    role: str | Role,
    tenant: str,
    *,
    name: str | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> tuple[ApiKey, str]:
    """Make a key of ``role`` for ``tenant``: ``(stored key, token)``. The token is the only
    copy of the secret: show it once."""
    checked = parse_role(role)
    for text, what in ((tenant, "tenant"), (name, "key name")):
        if text is not None:
            check_text(text, what)
    if not tenant:
        raise InvalidInput("a key needs a tenant")
    key_id = secrets.token_hex(8)
    token = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    key = ApiKey(key_id, tenant, checked, key_hash(token), name, clock.time())
    await store.create_api_key(key)
    return key, token


async def authenticate(store: Store, token: str) -> ApiKey | None:
    """The active key ``token`` is, else ``None`` (unknown, malformed, revoked or wrong)."""
    prefix, _, rest = token.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != PREFIX or len(key_id) != 16 or not secret or not key_id.isalnum():
        return None
    key = await store.api_key(key_id)
    if key is None or not key.active:
        return None
    return key if hmac.compare_digest(key_hash(token), key.secret_hash) else None


def actor(key: ApiKey) -> str:
    """How a key's actions are recorded in a journal: ``key:<id> (<role>)``."""
    return f"key:{key.id} ({key.role.value})"
