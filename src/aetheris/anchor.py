"""Ed25519 keys that anchor journals outside the database.

The hash chain alone proves nothing to someone who can write to the database: they can edit
an event, recompute every hash after it and move the job's head. So the processes that write
journals (workers, the API server, the CLI's commands that act) hold a *signing key* that the
database never holds, and every write that moves a job's head stores an :class:`Anchor` on its
last event: a signature of :func:`~aetheris.journal.anchor_statement` (job, seq, hash). A
verifier given the public keys it trusts, from outside the database, then knows which events
a key holder wrote (:mod:`aetheris.audit`).

Where keys come from:

* ``AETHERIS_SIGNING_KEY``: a path to a key file (PEM, as ``aetheris keys signing create``
  writes it) or the key itself, the base64 of its 32-byte seed.
* ``AETHERIS_TRUSTED_KEYS``: public keys to trust, comma-separated; each one a key
  (``ed25519:<base64>``, as ``aetheris keys signing public`` prints it) or a path to a file of
  keys, one a line (``#`` starts a comment). Several keys: rotation. Each anchor names its
  key's id (:attr:`PublicKey.key_id`), so old journals still verify with the old key trusted.

Rejected: keeping the public keys in the database and trusting them there (whoever edits the
journal would add their own); an HMAC secret (a verifier would need the secret, and could
then forge); signing each event (one signature per write is enough: the last event's hash
chains the others, and a signature costs 40 to 90 µs of CPU on a small VM).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from aetheris.errors import ConfigurationError
from aetheris.journal import Anchor, anchor_statement

SIGNING_KEY_ENV = "AETHERIS_SIGNING_KEY"
TRUSTED_KEYS_ENV = "AETHERIS_TRUSTED_KEYS"
PREFIX = "ed25519:"


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An Ed25519 public key; ``text`` is how people pass it around."""

    raw: bytes

    @property
    def key_id(self) -> str:
        """The first 16 hex digits of the key's sha256: what an anchor names."""
        return hashlib.sha256(self.raw).hexdigest()[:16]

    @property
    def text(self) -> str:
        return PREFIX + base64.b64encode(self.raw).decode()

    def verify(self, signature: str, message: bytes) -> bool:
        """Whether ``signature`` (base64) signs ``message`` with this key."""
        try:
            sig = base64.b64decode(signature, validate=True)
            Ed25519PublicKey.from_public_bytes(self.raw).verify(sig, message)
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True

    @classmethod
    def parse(cls, text: str) -> PublicKey:
        """``ed25519:<base64>`` (or the bare base64) of the key's 32 bytes."""
        body = text.strip().removeprefix(PREFIX)
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            shown = text if len(text) < 80 else text[:77] + "..."
            raise ConfigurationError(
                f"not an Ed25519 public key: {shown!r} (expected ed25519:<base64 of 32 bytes>, "
                "as `aetheris keys signing public FILE` prints it)"
            )
        return cls(raw)


class SigningKey:
    """An Ed25519 private key: signs anchors and bundles. Never stored in the database."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public = PublicKey(raw)

    def __repr__(self) -> str:
        return f"<SigningKey {self.key_id}>"

    @property
    def key_id(self) -> str:
        return self.public.key_id

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    def sign(self, message: bytes) -> str:
        """The base64 signature of ``message``."""
        return base64.b64encode(self._key.sign(message)).decode()

    def anchor(self, job_id: str, seq: int, hash_: str) -> Anchor:
        """The anchor of event ``seq`` (hash ``hash_``) of job ``job_id``."""
        return Anchor(self.key_id, self.sign(anchor_statement(job_id, seq, hash_)))

    def pem(self) -> bytes:
        """The key as an unencrypted PKCS#8 PEM file's bytes (what ``create`` writes)."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def load(cls, path: str | Path) -> SigningKey:
        """Read a key file: PEM (PKCS#8), or the base64 of the 32-byte seed."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"cannot read the signing key {path}: {exc}") from exc
        if data.lstrip().startswith(b"-----BEGIN"):
            try:
                key = serialization.load_pem_private_key(data, password=None)
            except (ValueError, TypeError) as exc:
                raise ConfigurationError(f"{path} is not a readable PEM key: {exc}") from exc
            if not isinstance(key, Ed25519PrivateKey):
                raise ConfigurationError(f"{path} holds a key that is not Ed25519")
            return cls(key)
        return cls.from_seed(data.decode("utf-8", "replace"), f"the signing key file {path}")

    @classmethod
    def from_seed(cls, text: str, what: str = "the signing key") -> SigningKey:
        try:
            seed = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            seed = b""
        if len(seed) != 32:
            raise ConfigurationError(
                f"{what} is neither a key file's path nor the base64 of a 32-byte Ed25519 seed"
            )
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_setting(cls, value: str) -> SigningKey:
        """``AETHERIS_SIGNING_KEY``'s value: a key file's path, else a base64 seed."""
        if os.path.exists(value):
            return cls.load(value)
        if os.sep in value or value.endswith((".pem", ".key")):
            raise ConfigurationError(f"the signing key file {value} does not exist")
        return cls.from_seed(value, f"{SIGNING_KEY_ENV}")


def signing_key_from_env(environ: Mapping[str, str] = os.environ) -> SigningKey | None:
    """The key ``AETHERIS_SIGNING_KEY`` names, if it is set."""
    value = environ.get(SIGNING_KEY_ENV, "").strip()
    return SigningKey.from_setting(value) if value else None


@dataclass(frozen=True, slots=True)
class TrustedKeys:
    """The public keys a verifier trusts, by key id; given from outside the database."""

    keys: Mapping[str, PublicKey]

    def __bool__(self) -> bool:
        return bool(self.keys)

    def get(self, key_id: str) -> PublicKey | None:
        return self.keys.get(key_id)

    def check(self, anchor: Anchor, message: bytes) -> str | None:
        """``None`` when ``anchor`` is a valid signature of ``message`` by a trusted key;
        else why not."""
        key = self.keys.get(anchor.key_id)
        if key is None:
            return f"signed by key {anchor.key_id}, which is not trusted"
        if not key.verify(anchor.signature, message):
            return f"the signature (key {anchor.key_id}) does not match"
        return None

    @classmethod
    def of(cls, keys: Iterable[PublicKey]) -> TrustedKeys:
        return cls({k.key_id: k for k in keys})

    @classmethod
    def parse(cls, values: Iterable[str | PublicKey]) -> TrustedKeys:
        """Keys (``ed25519:...``) or files of keys, one a line; several per value, by commas."""
        found: list[PublicKey] = []
        for value in values:
            if isinstance(value, PublicKey):
                found.append(value)
                continue
            for item in (part.strip() for part in value.split(",")):
                if item:
                    found.extend(_keys_of(item))
        return cls.of(found)


def _keys_of(item: str) -> list[PublicKey]:
    if not item.startswith(PREFIX) and os.path.exists(item):
        try:
            lines = Path(item).read_text("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"cannot read the trusted keys file {item}: {exc}") from exc
        keys = [ln.split("#", 1)[0].strip() for ln in lines]
        return [PublicKey.parse(k) for k in keys if k]
    return [PublicKey.parse(item)]


def trusted_from_env(environ: Mapping[str, str] = os.environ) -> TrustedKeys:
    """The keys ``AETHERIS_TRUSTED_KEYS`` lists (none when it is unset)."""
    value = environ.get(TRUSTED_KEYS_ENV, "").strip()
    return TrustedKeys.parse([value]) if value else TrustedKeys({})


__all__ = [
    "SIGNING_KEY_ENV",
    "TRUSTED_KEYS_ENV",
    "PublicKey",
    "SigningKey",
    "TrustedKeys",
    "signing_key_from_env",
    "trusted_from_env",
]
