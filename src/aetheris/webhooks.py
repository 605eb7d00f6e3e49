"""Outgoing webhooks: subscriptions, signed delivery with retries, and the receiver's check.

A tenant subscribes a URL to some of its jobs' events (:class:`~aetheris.models.WebhookEvent`).
The store writes one delivery per event and matching subscription in the transaction of the
event (the outbox, :mod:`aetheris.store.outbox`); a :class:`Deliverer` (run by the API server
while it serves) claims due deliveries and POSTs each as JSON::

    POST <url>
    Content-Type: application/json
    Aetheris-Event-Id: <job id>:<seq>          the same on every retry: deduplicate on it
    Aetheris-Event-Type: job.completed
    Aetheris-Timestamp: 1767225600             Unix seconds of this try
    Aetheris-Signature: v1=<hex>               HMAC-SHA256(secret, "<timestamp>.<body>")

    {"id": ..., "type": ..., "created_at": ..., "tenant": ...,
     "job": {"id", "agent", "status"}, "data": {... the event's facts, "summary"}}

A 2xx answer delivers it; any other answer, a timeout or a connection error is retried after
a growing delay with jitter (:class:`RetryPolicy`), until the delivery is ``dead`` after
``max_attempts`` tries. Every try is in the delivery's log. Delivery is at least once: a
deliverer that dies after the receiver answered, before recording it, sends again once its
claim's lease runs out, with the same event id. A receiver checks a request with
:func:`verify_signature`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from aetheris import signing
from aetheris.clock import SYSTEM_CLOCK, Clock
from aetheris.errors import AetherisError, InvalidInput, SignatureInvalid
from aetheris.journal import check_text
from aetheris.store.port import (
    AttemptOutcome,
    DeliveryClaim,
    Store,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
)

log = logging.getLogger("aetheris.webhooks")

SECRET_PREFIX = "whsec_"
URL_LIMIT = 2048
ERROR_BODY_LIMIT = 200  # characters of a refusing receiver's answer kept in the log


# -- signatures: what a receiver checks ---------------------------------------------------------


def sign(secret: str, timestamp: str | int, body: bytes | str) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``: ``v1=<hex>``, the
    scheme of :mod:`aetheris.signing` (incoming webhooks verify the same one)."""
    raw = body.encode() if isinstance(body, str) else body
    return signing.sign(secret, int(timestamp), raw)


def verify_signature(
    secret: str,
    timestamp: str | int,
    body: bytes | str,
    header: str,
    tolerance: float | None = 300,
    *,
    now: float | None = None,
) -> bool:
    """Whether ``header`` (the ``Aetheris-Signature`` value) signs exactly ``body`` (the raw
    request body) at ``timestamp`` (the ``Aetheris-Timestamp`` value) with ``secret``, and
    that timestamp is within ``tolerance`` seconds of ``now`` (a replayed old request fails;
    ``None``: any age). The header may carry several signatures, comma-separated. For the
    reason of a refusal, :func:`aetheris.signing.verify` raises it."""
    raw = body.encode() if isinstance(body, str) else body
    try:
        signing.verify(
            secret,
            str(timestamp).strip(),
            header,
            raw,
            now=time.time() if now is None else now,
            tolerance=math.inf if tolerance is None else tolerance,
        )
    except SignatureInvalid:
        return False
    return True


# -- subscriptions ------------------------------------------------------------------------------


def check_url(url: str) -> str:
    """Refuse a URL a delivery cannot be POSTed to: only ``http`` and ``https`` with a host."""
    check_text(url, "webhook URL")
    if len(url) > URL_LIMIT:
        raise InvalidInput(f"webhook URL is over {URL_LIMIT} characters")
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise InvalidInput(f"webhook URL {url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidInput(f"webhook URL must be http:// or https://, got {url!r}")
    if not host:
        raise InvalidInput(f"webhook URL {url!r} has no host")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise InvalidInput(f"webhook URL {url!r} contains spaces or control characters")
    del port  # read only to refuse a malformed port
    return url


def parse_events(events: Iterable[str | WebhookEvent]) -> tuple[WebhookEvent, ...]:
    """The event types named, each once and in order; an unknown one is refused by name."""
    known = ", ".join(e.value for e in WebhookEvent)
    chosen: list[WebhookEvent] = []
    for name in events:
        try:
            event = WebhookEvent(name)
        except ValueError:
            raise InvalidInput(f"unknown webhook event {name!r}: use one of {known}") from None
        if event not in chosen:
            chosen.append(event)
    if not chosen:
        raise InvalidInput(f"a webhook needs at least one event: {known}")
    return tuple(chosen)


async def create_webhook(
    store: Store,
    tenant: str,
    url: str,
    events: Iterable[str | WebhookEvent],
    *,
    clock: Clock = SYSTEM_CLOCK,
) -> Webhook:
    """Subscribe ``url`` to ``events`` of ``tenant``'s jobs, with a new secret (the only time
    it is given out is now: show it once). Bad input is :class:`InvalidInput`."""
    check_text(tenant, "tenant")
    if not tenant:
        raise InvalidInput("a webhook needs a tenant")
    hook = Webhook(
        id=f"wh_{secrets.token_hex(8)}",
        tenant=tenant,
        url=check_url(url),
        secret=SECRET_PREFIX + secrets.token_urlsafe(32),
        events=parse_events(events),
        created_at=clock.time(),
    )
    await store.create_webhook(hook)
    return hook


# -- delivery -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try again: after the n-th failed try wait ``delays[n-1]`` seconds (the last
    one once they run out), times a random factor in ``[1 - jitter, 1 + jitter]``, so that
    receivers coming back up are not hit by every delivery at once; after ``max_attempts``
    tries, give up (``dead``)."""

    max_attempts: int = 10
    delays: Sequence[float] = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or not self.delays or min(self.delays) < 0:
            raise ValueError("a retry policy needs max_attempts >= 1 and delays >= 0")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")

    def retry_in(self, tries: int, draw: float = 0.5) -> float | None:
        """The delay after ``tries`` failed tries (``None``: give up); ``draw`` in [0, 1)."""
        if tries >= self.max_attempts:
            return None
        base = self.delays[min(tries, len(self.delays)) - 1]
        return base * (1 - self.jitter + 2 * self.jitter * draw)


def event_body(delivery: WebhookDelivery) -> bytes:
    """What is POSTed: the same bytes on every try (only the headers' timestamp changes)."""
    doc = {
        "id": delivery.event_id,
        "type": delivery.event_type.value,
        "created_at": delivery.created_at,
        "tenant": delivery.tenant,
        "job": {
            "id": delivery.job_id,
            "agent": delivery.agent,
            "status": delivery.job_status.value,
        },
        "data": delivery.payload,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class Deliverer:
    """Claims due deliveries and POSTs them, until cancelled (:meth:`run`).

    Several deliverers may run on one database (every API server runs one): each claim is
    exclusive and held for ``lease`` seconds, longer than a try can take (``timeout``). A
    batch of up to ``batch`` deliveries is sent concurrently. ``on_attempt`` is called with
    each delivery as recorded after a try (for tests, metrics).
    """

    def __init__(
        self,
        store: Store,
        *,
        policy: RetryPolicy | None = None,
        batch: int = 20,
        timeout: float = 10.0,
        lease: float = 60.0,
        poll_interval: float = 1.0,
        transport: httpx.AsyncBaseTransport | None = None,
        on_attempt: Callable[[WebhookDelivery], None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.store = store
        self.policy = policy or RetryPolicy()
        self.batch = batch
        self.lease = max(lease, timeout * 2)
        self.poll_interval = poll_interval
        self.on_attempt = on_attempt
        self.clock = clock
        self._http = httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, transport=transport, trust_env=False
        )
        self._wake = asyncio.Event()

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Deliverer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def wake(self) -> None:
        """Look for due deliveries now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled. A database that fails is retried, never fatal."""
        failures = 0
        while True:
            try:
                sent = await self.deliver_due()
                failures = 0
            except AetherisError as exc:
                failures += 1
                log.warning("webhook deliveries: the store failed (%s); trying again", exc)
                sent = 0
            if sent < self.batch:
                await self._idle(self.poll_interval * min(2**failures, 30))

    async def _idle(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def deliver_due(self) -> int:
        """Claim a batch of due deliveries and try each once; how many were tried."""
        claims = await self.store.claim_deliveries(limit=self.batch, lease=self.lease)
        if claims:
            await asyncio.gather(*(self._deliver(claim) for claim in claims))
        return len(claims)

    async def _deliver(self, claim: DeliveryClaim) -> None:
        delivery = claim.delivery
        started = time.monotonic()
        status, error = await self._post(claim)
        duration = time.monotonic() - started
        delivered = error is None
        retry_in = None if delivered else self.policy.retry_in(delivery.attempts + 1, self._draw())
        outcome = AttemptOutcome(status, error, duration, delivered, retry_in)
        recorded = await self.store.record_attempt(delivery.id, claim.token, outcome)
        if recorded is None:
            log.info(
                "webhook delivery %s: its claim ran out before the try was recorded", delivery.id
            )
            return
        if not delivered:
            log.info(
                "webhook delivery %s (%s) to %s failed: %s; %s",
                delivery.id,
                delivery.event_id,
                claim.url,
                error,
                f"retry in {retry_in:.1f}s" if retry_in is not None else "giving up (dead)",
            )
        if self.on_attempt is not None:
            self.on_attempt(recorded)

    def _draw(self) -> float:
        return self.clock.random()

    async def _post(self, claim: DeliveryClaim) -> tuple[int | None, str | None]:
        """One try: the receiver's status and what went wrong (``None``: delivered)."""
        body = event_body(claim.delivery)
        timestamp = str(int(self.clock.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "aetheris-webhooks/1",
            "Aetheris-Event-Id": claim.delivery.event_id,
            "Aetheris-Event-Type": claim.delivery.event_type.value,
            signing.TIMESTAMP_HEADER: timestamp,
            signing.SIGNATURE_HEADER: sign(claim.secret, timestamp, body),
        }
        try:
            async with self._http.stream(
                "POST", claim.url, content=body, headers=headers
            ) as response:
                if response.is_success:
                    return response.status_code, None
                answer = await _start_of(response)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return response.status_code, f"HTTP {response.status_code}" + (
            f": {answer}" if answer else ""
        )


async def _start_of(response: httpx.Response) -> str:
    """The first characters of a refusal's body, on one line (the rest is not read)."""
    chunk = b""
    async for part in response.aiter_bytes():
        chunk += part
        if len(chunk) >= ERROR_BODY_LIMIT * 4:
            break
    text = chunk.decode("utf-8", "replace")
    return " ".join(text.split())[:ERROR_BODY_LIMIT]
