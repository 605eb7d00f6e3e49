"""Webhook signatures: HMAC-SHA256 over the timestamp and the body.

A signed request carries two headers::

    Aetheris-Timestamp: 1767225600
    Aetheris-Signature: v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd

The signature is the hex HMAC-SHA256, keyed by the shared secret, of ``f"{timestamp}."``
followed by the body's bytes exactly as sent. A receiver accepts it when one of the ``v1=``
values (several, comma-separated, while a secret is rotated) matches, compared in constant
time, and the timestamp is within :data:`TOLERANCE` seconds of its clock: a captured request
cannot be replayed later. (Within the tolerance it can: receivers deduplicate by event id.)

The scheme is that of Stripe's and Standard Webhooks' signatures, so that senders have code
for it at hand. Incoming webhooks (:mod:`aetheris.hooks`) verify it; outgoing ones sign with it.
"""

from __future__ import annotations

import hashlib
import hmac

from aetheris.errors import SignatureInvalid

SIGNATURE_HEADER = "Aetheris-Signature"
TIMESTAMP_HEADER = "Aetheris-Timestamp"
TOLERANCE = 300.0  # seconds between the sender's timestamp and the receiver's clock
VERSION = "v1"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``: ``v1=<hex>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{VERSION}={mac.hexdigest()}"


def headers(secret: str, body: bytes, now: float) -> dict[str, str]:
    """Both headers of a request sending ``body`` at ``now`` (Unix seconds)."""
    timestamp = int(now)
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def verify(
    secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now: float,
    tolerance: float = TOLERANCE,
) -> None:
    """Raise :class:`~aetheris.errors.SignatureInvalid` (saying why) unless ``signature`` (the
    header's value) signs ``body`` at ``timestamp`` with ``secret``, within ``tolerance``
    seconds of ``now``."""
    if not timestamp or not signature:
        missing = TIMESTAMP_HEADER if not timestamp else SIGNATURE_HEADER
        raise SignatureInvalid(f"the request has no {missing} header: it is not signed")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureInvalid(f"{TIMESTAMP_HEADER} is not a Unix time in seconds")
    if abs(now - int(timestamp)) > tolerance:
        raise SignatureInvalid(
            f"{TIMESTAMP_HEADER} is more than {tolerance:.0f}s away from the server's clock "
            "(a request replayed later, or a clock that is off)"
        )
    expected = sign(secret, int(timestamp), body).encode()
    offered = [part.strip().encode() for part in signature.split(",")]
    # Every candidate is compared in full (no early exit): the time taken tells nothing.
    matched = [hmac.compare_digest(expected, candidate) for candidate in offered]
    if not any(matched):
        raise SignatureInvalid(
            f"{SIGNATURE_HEADER} does not match the body: wrong secret, or the body changed"
        )
