"""Webhook pieces that need no store: signatures, URLs, event names, the retry policy and the
outbox's choice of events."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from aetheris.errors import InvalidInput
from aetheris.journal import GENESIS_HASH, EventDraft, EventType, seal
from aetheris.store.outbox import notices
from aetheris.store.port import WebhookEvent
from aetheris.webhooks import RetryPolicy, check_url, parse_events, sign, verify_signature


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"id":"j:3"}'
    digest = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("s3cret", 1700000000, body) == f"v1={digest}"
    assert sign("s3cret", "1700000000", body.decode()) == f"v1={digest}"


def test_verify_accepts_any_of_several_signatures_and_refuses_the_rest() -> None:
    body, stamp = b"{}", 1700000000
    good = sign("new", stamp, body)
    assert verify_signature("new", stamp, body, good, now=stamp)
    assert verify_signature(
        "new", str(stamp), body, f"{sign('old', stamp, body)}, {good}", now=stamp
    )
    assert not verify_signature("new", stamp, body, "", now=stamp)
    assert not verify_signature("new", stamp, body, good.upper(), now=stamp)
    assert not verify_signature("new", "yesterday", body, good, now=stamp)
    assert not verify_signature("new", stamp, body, good, now=stamp - 301)
    assert verify_signature("new", stamp, body, good, tolerance=None, now=stamp + 10**6)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/hook", "https://example.com/a?b=c", "http://[::1]:9/x"],
)
def test_http_and_https_urls_are_taken(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com/x", "http:// or https://"),
        ("example.com/hook", "http:// or https://"),
        ("http:///nohost", "no host"),
        ("http://exa mple.com/", "spaces or control characters"),
        ("http://example.com/\x1b[31m", "spaces or control characters"),
        ("http://example.com:99999/", "not a URL"),
        ("http://example.com/" + "a" * 3000, "over 2048"),
        ("http://example.com/\x00", "NUL"),
    ],
)
def test_other_urls_are_refused_by_name(url: str, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        check_url(url)


def test_events_are_named_once_and_checked() -> None:
    assert parse_events(["job.failed", "job.failed", WebhookEvent.JOB_COMPLETED]) == (
        WebhookEvent.JOB_FAILED,
        WebhookEvent.JOB_COMPLETED,
    )
    with pytest.raises(InvalidInput, match=r"unknown webhook event 'job\.done'.*job\.completed"):
        parse_events(["job.done"])
    with pytest.raises(InvalidInput, match="at least one event"):
        parse_events([])


def test_the_retry_delay_grows_then_stays_and_ends() -> None:
    policy = RetryPolicy(max_attempts=5, delays=(5.0, 30.0, 120.0), jitter=0.2)
    assert [policy.retry_in(n) for n in range(1, 6)] == [5.0, 30.0, 120.0, 120.0, None]
    assert policy.retry_in(1, draw=0.0) == pytest.approx(4.0)
    assert policy.retry_in(1, draw=0.999) == pytest.approx(6.0, abs=0.01)
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=1.0)


def test_the_outbox_tells_of_ends_approvals_and_doubts_only() -> None:
    drafts = [
        EventDraft(EventType.JOB_PARKED, {"reason": "signal", "detail": {}}),
        EventDraft(EventType.JOB_PARKED, {"reason": "approval", "detail": {"name": "pay"}}),
        EventDraft(EventType.EFFECT_IN_DOUBT, {"name": "pay"}, 7),
        EventDraft(EventType.OP, {"name": "x"}, 8),
        EventDraft(EventType.JOB_COMPENSATED, {"error": {"type": "E", "message": "m"}}),
    ]
    sealed, prev = [], GENESIS_HASH
    for seq, draft in enumerate(drafts):
        event = seal("j", seq, prev, draft, 1.0)
        sealed.append(event)
        prev = event.hash
    found = notices(sealed)
    assert [(n.event_id, n.type.value) for n in found] == [
        ("j:1", "job.approval_requested"),
        ("j:2", "effect.in_doubt"),
        ("j:4", "job.compensated"),
    ]
    assert found[2].payload["summary"] == ("job j failed and its effects were compensated: E: m")
