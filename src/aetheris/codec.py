"""Payload codecs: what a job's payloads become before they reach the database.

A :class:`PayloadCodec` turns the bytes of one payload (a job's input, a result, an error's
message and traceback, a signal's payload, an approval's request, a ledger row's result, a
model call's blob) into the bytes stored, and back. Temporal's ``PayloadCodec`` is the model;
Aetheris applies it in one place, a wrapper of the store port
(:mod:`aetheris.store.encoded`), so the runtime, the scheduler and the SQL stores never see
ciphertext and never need a key.

:class:`EncryptionCodec` encrypts with AES-256-GCM under keys the database never holds: a
:class:`FileKeyStore` keeps one random key per job (or per tenant) in a folder of files,
``AETHERIS_PAYLOAD_KEY_DIR`` by default. Each ciphertext names its key, so keys can be rotated
(new writes take the newest key, old ones still decrypt). Destroying a job's keys
(:meth:`EncryptionCodec.shred`) makes its payloads unreadable for good: crypto-shredding.

Encryption is deterministic: the nonce is derived (HMAC-SHA256) from the key, the key id and
the plaintext, so one value under one key is always the same ciphertext. That is deliberate:
a job's row and its journal hold the same result, written separately, and ``verify`` compares
them *without* the key. The price is that equal payloads of one job (one key) can be seen to
be equal. Designs rejected: a random nonce (the row and the journal would differ, so verify
would need the key); one key for the whole database (no shredding of one job); keys wrapped
and stored in the database (a backup of the database holds them, and shredding must then
reach every backup).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from aetheris.errors import ConfigurationError, PayloadShredded, PayloadUnreadable

KEY_DIR_ENV = "AETHERIS_PAYLOAD_KEY_DIR"
KEY_SCOPE_ENV = "AETHERIS_PAYLOAD_KEY_SCOPE"
SHREDDED = "[shredded]"  # what a read shows in place of a payload whose key was destroyed

_MAGIC = b"AE1"  # format of an EncryptionCodec ciphertext: magic, key id, nonce, sealed bytes
_NONCE = 12


@dataclass(frozen=True, slots=True)
class PayloadScope:
    """Whose payload is encoded: the job's tenant and id (``job_id`` ``None``: a payload of
    the tenant's that no job holds yet, such as a keyed signal waiting in the mailbox)."""

    tenant: str
    job_id: str | None


class PayloadCodec(Protocol):
    """Encode a payload's bytes for storage and decode them back.

    ``decode`` is given only the stored bytes: what it needs to decode them (a key id) must be
    in them. It raises :class:`~aetheris.errors.PayloadShredded` when the payload can never
    be read again, and :class:`~aetheris.errors.PayloadUnreadable` (or a
    :class:`~aetheris.errors.ConfigurationError` for a missing key) when it cannot be read
    here and now. Both run in the event loop's thread: keep them fast (no network)."""

    def encode(self, data: bytes, scope: PayloadScope) -> bytes: ...

    def decode(self, data: bytes) -> bytes: ...


@runtime_checkable
class ShreddingCodec(PayloadCodec, Protocol):
    """A codec that can destroy what reads a job's payloads (see :meth:`App.shred`)."""

    def shred(self, scope: PayloadScope) -> list[str]: ...

    def shredded(self, scope: PayloadScope) -> bool: ...


CURRENT_FOR = 5.0  # seconds a scope's current key is remembered by the process writing


class FileKeyStore:
    """Random 256-bit keys in files under ``directory``, one set per job (``per="job"``) or
    per tenant (``per="tenant"``); the database never holds them.

    A scope's keys are ``<dir>/<job|tenant>/<sha256 of its name>/<version>.key`` (mode
    0600); the key id recorded with each ciphertext is ``<job|tenant>/<digest>/<version>``.
    The newest version encrypts; :meth:`rotate` adds one. :meth:`shred` deletes a scope's
    keys and leaves a ``shredded`` mark, so that a read says "shredded" rather than
    "missing", and nothing is ever encrypted for that scope again.
    """

    def __init__(self, directory: str | os.PathLike[str], *, per: str = "job") -> None:
        if per not in ("job", "tenant"):
            raise ConfigurationError(f"payload keys are per 'job' or per 'tenant', not {per!r}")
        self.directory = Path(directory)
        self.per: Literal["job", "tenant"] = "job" if per == "job" else "tenant"
        self._current: dict[PayloadScope, tuple[float, tuple[str, bytes]]] = {}

    def __repr__(self) -> str:
        return f"<FileKeyStore {self.directory} per={self.per}>"

    def _folder(self, scope: PayloadScope) -> str:
        if self.per == "job" and scope.job_id is not None:
            kind, name = "job", f"{scope.tenant}\0{scope.job_id}"
        else:
            kind, name = "tenant", scope.tenant
        return f"{kind}/{hashlib.sha256(name.encode('utf-8')).hexdigest()[:32]}"

    def current(self, scope: PayloadScope) -> tuple[str, bytes]:
        """The key that encrypts ``scope``'s payloads now (made on first use). Remembered for
        ``CURRENT_FOR`` seconds: a running job writes many payloads, and only an ended job can
        be shredded (a key rotated by another process is taken up within that time)."""
        now = time.monotonic()
        found = self._current.get(scope)
        if found is not None and found[0] > now:
            return found[1]
        key = self._current_now(scope)
        if len(self._current) > 4096:
            self._current.clear()
        self._current[scope] = (now + CURRENT_FOR, key)
        return key

    def _current_now(self, scope: PayloadScope) -> tuple[str, bytes]:
        folder = self._folder(scope)
        path = self.directory / folder
        if (path / "shredded").exists():
            raise PayloadShredded(f"the payload keys of {_name(scope)} were destroyed")
        versions = _versions(path)
        if not versions:
            return self._create(folder, 1)
        key_id = f"{folder}/{versions[-1]}"
        return key_id, self.key(key_id)

    def rotate(self, scope: PayloadScope) -> str:
        """Add a new key for ``scope``: later writes use it, earlier ones keep theirs."""
        self._current.pop(scope, None)
        self._current_now(scope)
        folder = self._folder(scope)
        return self._create(folder, _versions(self.directory / folder)[-1] + 1)[0]

    def _create(self, folder: str, version: int) -> tuple[str, bytes]:
        path = self.directory / folder
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        key_id = f"{folder}/{version}"
        key = secrets.token_bytes(32)
        try:
            fd = os.open(path / f"{version}.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use that one
            return key_id, self.key(key_id)
        with os.fdopen(fd, "wb") as out:
            out.write(key)
            out.flush()
            os.fsync(out.fileno())
        return key_id, key

    def key(self, key_id: str) -> bytes:
        """The key ``key_id`` (read each time, so a key shredded by another process is gone
        here too). Raises :class:`PayloadShredded` or :class:`ConfigurationError`."""
        folder, _, version = key_id.rpartition("/")
        if not folder or not version.isdigit() or ".." in key_id.split("/"):
            raise PayloadUnreadable(f"payload key id {key_id!r} is not one of a FileKeyStore")
        try:
            key = (self.directory / folder / f"{version}.key").read_bytes()
        except FileNotFoundError:
            if (self.directory / folder / "shredded").exists():
                raise PayloadShredded(f"payload key {key_id} was destroyed") from None
            raise ConfigurationError(
                f"payload key {key_id} is not in {self.directory}: is {KEY_DIR_ENV} (or the "
                "App's codec) the key folder these jobs were written with?"
            ) from None
        if len(key) != 32:
            raise PayloadUnreadable(f"payload key file of {key_id} does not hold a 256-bit key")
        return key

    def shred(self, scope: PayloadScope) -> list[str]:
        """Destroy ``scope``'s keys (the ids destroyed); irreversible. With keys per tenant,
        one job's keys are its tenant's: refused, so no other job loses its payloads."""
        if self.per == "tenant" and scope.job_id is not None:
            raise ConfigurationError(
                f"payload keys are per tenant here: shredding job {scope.job_id} would destroy "
                f"every payload of tenant {scope.tenant!r}; keys per job can be shredded alone"
            )
        self._current.pop(scope, None)
        folder = self._folder(scope)
        path = self.directory / folder
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        (path / "shredded").touch()
        gone = []
        for version in _versions(path):
            key_file = path / f"{version}.key"
            _overwrite(key_file)
            key_file.unlink()
            gone.append(f"{folder}/{version}")
        return gone

    def shredded(self, scope: PayloadScope) -> bool:
        return (self.directory / self._folder(scope) / "shredded").exists()


def _name(scope: PayloadScope) -> str:
    return f"job {scope.job_id}" if scope.job_id is not None else f"tenant {scope.tenant!r}"


def _versions(path: Path) -> list[int]:
    if not path.is_dir():
        return []
    return sorted(int(p.stem) for p in path.glob("*.key") if p.stem.isdigit())


def _overwrite(path: Path) -> None:
    """Write zeros over a key file before it is unlinked (a best effort: a copy-on-write file
    system or a backup may keep the old blocks; keep key folders out of backups)."""
    try:
        size = path.stat().st_size
        with path.open("r+b") as out:
            out.write(b"\0" * size)
            out.flush()
            os.fsync(out.fileno())
    except OSError:
        pass


class EncryptionCodec:
    """AES-256-GCM with a derived nonce, under the keys of a :class:`FileKeyStore`.

    Stored bytes: ``AE1``, the key id's length (one byte) and the key id, the 12-byte nonce,
    then the ciphertext and its tag; the header is authenticated with it. A payload altered
    in the database, or decrypted with another key of the same id, fails with
    :class:`~aetheris.errors.PayloadUnreadable`.
    """

    def __init__(self, keys: FileKeyStore) -> None:
        self.keys = keys

    def __repr__(self) -> str:
        return f"<EncryptionCodec {self.keys!r}>"

    def encode(self, data: bytes, scope: PayloadScope) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        key_id, key = self.keys.current(scope)
        name = key_id.encode("utf-8")
        header = _MAGIC + bytes([len(name)]) + name
        nonce = hmac.new(key, b"nonce\0" + header + data, hashlib.sha256).digest()[:_NONCE]
        return header + nonce + AESGCM(key).encrypt(nonce, data, header)

    def decode(self, data: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 1:
            raise PayloadUnreadable("stored payload is not an EncryptionCodec ciphertext")
        size = data[len(_MAGIC)]
        end = len(_MAGIC) + 1 + size
        header, nonce, sealed = data[:end], data[end : end + _NONCE], data[end + _NONCE :]
        key_id = header[len(_MAGIC) + 1 :].decode("utf-8", errors="replace")
        key = self.keys.key(key_id)
        try:
            return AESGCM(key).decrypt(nonce, sealed, header)
        except InvalidTag:
            raise PayloadUnreadable(
                f"payload under key {key_id} does not decrypt: the key is not the one it was "
                "written with, or the stored bytes were altered"
            ) from None

    def shred(self, scope: PayloadScope) -> list[str]:
        """Destroy the keys of ``scope`` (see :meth:`FileKeyStore.shred`)."""
        return self.keys.shred(scope)

    def shredded(self, scope: PayloadScope) -> bool:
        return self.keys.shredded(scope)


def codec_from_env(env: Mapping[str, str] | None = None) -> PayloadCodec | None:
    """An :class:`EncryptionCodec` on ``AETHERIS_PAYLOAD_KEY_DIR`` (keys per job, or as
    ``AETHERIS_PAYLOAD_KEY_SCOPE`` says: ``job`` or ``tenant``), or ``None`` when unset."""
    env = os.environ if env is None else env
    directory = env.get(KEY_DIR_ENV)
    if not directory:
        return None
    return EncryptionCodec(FileKeyStore(directory, per=env.get(KEY_SCOPE_ENV) or "job"))


def to_text(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def from_text(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise PayloadUnreadable("stored payload is not valid base64") from None
