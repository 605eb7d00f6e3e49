"""Incoming webhooks without a server: signatures, declarations and what a request yields."""

from __future__ import annotations

import time
from typing import Any

import pytest

from aetheris import App, ConfigurationError, InvalidInput, SignatureInvalid
from aetheris.hooks import Hooks, resolve_pointer
from aetheris.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, headers, sign, verify

NOW = 1_767_225_600.0
BODY = b'{"data": {"order_id": "o-1"}}'


# -- signatures -------------------------------------------------------------------------------


def test_a_signature_verifies_its_body_with_its_secret_within_the_tolerance() -> None:
    signed = headers("s3cret", BODY, NOW)
    assert signed[TIMESTAMP_HEADER] == str(int(NOW))
    assert signed[SIGNATURE_HEADER] == sign("s3cret", int(NOW), BODY)
    assert signed[SIGNATURE_HEADER].startswith("v1=") and len(signed[SIGNATURE_HEADER]) == 67
    for skew in (-299, 0, 299):
        verify("s3cret", signed[TIMESTAMP_HEADER], signed[SIGNATURE_HEADER], BODY, now=NOW + skew)


@pytest.mark.parametrize(
    ("secret", "body", "now", "problem"),
    [
        ("other", BODY, NOW, "does not match"),
        ("s3cret", BODY + b" ", NOW, "does not match"),
        ("s3cret", BODY, NOW + 301, "away from the server's clock"),
        ("s3cret", BODY, NOW - 301, "away from the server's clock"),
    ],
)
def test_a_signature_does_not_verify_another_secret_body_or_time(
    secret: str, body: bytes, now: float, problem: str
) -> None:
    signed = headers("s3cret", BODY, NOW)
    with pytest.raises(SignatureInvalid, match=problem):
        verify(secret, signed[TIMESTAMP_HEADER], signed[SIGNATURE_HEADER], body, now=now)


def test_the_timestamp_is_part_of_what_is_signed() -> None:
    signature = sign("s3cret", int(NOW), BODY)
    with pytest.raises(SignatureInvalid, match="does not match"):
        verify("s3cret", str(int(NOW) + 1), signature, BODY, now=NOW)


@pytest.mark.parametrize(
    ("timestamp", "signature", "problem"),
    [
        (None, "v1=00", "no Aetheris-Timestamp header"),
        ("1767225600", None, "no Aetheris-Signature header"),
        ("", "v1=00", "no Aetheris-Timestamp header"),
        ("-5", "v1=00", "not a Unix time"),
        ("1.5", "v1=00", "not a Unix time"),
        ("٣٣", "v1=00", "not a Unix time"),  # digits, but not ASCII ones
        ("9" * 40, "v1=00", "not a Unix time"),
    ],
)
def test_missing_or_malformed_headers_are_refused(
    timestamp: str | None, signature: str | None, problem: str
) -> None:
    with pytest.raises(SignatureInvalid, match=problem):
        verify("s3cret", timestamp, signature, BODY, now=NOW)


def test_any_of_several_signatures_verifies_while_a_secret_is_rotated() -> None:
    old, new = sign("old", int(NOW), BODY), sign("new", int(NOW), BODY)
    verify("new", str(int(NOW)), f"{old}, {new}", BODY, now=NOW)
    with pytest.raises(SignatureInvalid):
        verify("newer", str(int(NOW)), f"{old},{new}", BODY, now=NOW)


# -- declarations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "problem"),
    [
        ("paid", {"key": "/id"}, "has no secret"),
        ("paid", {"key": "/id", "signature": "none"}, "has no secret"),
        ("paid", {"key": "/id", "secret": "s", "insecure": True}, "insecure=True is for"),
        ("paid", {"key": "/id", "secret": "s", "signature": "none"}, "verifies no secret"),
        ("paid", {"key": "/id", "secret": "s", "secret_env": "E"}, "not both"),
        ("paid", {"key": "/id", "secret": ""}, "secret must be a non-empty string"),
        ("paid", {"key": "/id", "secret": "s", "signature": "hmac"}, "'aetheris' or 'none'"),
        ("paid", {"key": "data.order_id", "secret": "s"}, "JSON pointer"),
        ("paid", {"key": "/a~2b", "secret": "s"}, "JSON pointer"),
        ("paid", {"key": 3, "secret": "s"}, "JSON pointer"),
        ("paid", {"key": "/id", "secret": "s", "tenant": ""}, "tenant"),
        ("pay/ments", {"key": "/id", "secret": "s"}, "path segment"),
        ("", {"key": "/id", "secret": "s"}, "path segment"),
        ("-x", {"key": "/id", "secret": "s"}, "path segment"),
    ],
)
def test_a_declaration_that_cannot_work_is_refused(
    name: str, options: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        Hooks().declare(name, **options)


def test_a_hook_is_declared_once_and_an_insecure_one_says_so() -> None:
    app = App("memory://")
    hook = app.hook("paid", key="/data/order_id", secret="s", tenant="acme")
    assert (hook.name, hook.tenant, hook.signed, hook.sender) == ("paid", "acme", True, "hook:paid")
    assert app.hooks.get("paid") is hook and "paid" in app.hooks and app.hooks.names == ["paid"]
    with pytest.raises(ConfigurationError, match="already declared"):
        app.hook("paid", key="/id", secret="s")
    open_hook = app.hook("ticket", key=lambda body, headers: "k", insecure=True)
    assert not open_hook.signed
    open_hook.authenticate(b"anything", {}, time.time())  # nothing to verify


def test_a_secret_from_the_environment_is_read_at_each_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hook = Hooks().declare("paid", key="/id", secret_env="AETHERIS_TEST_SECRET")
    monkeypatch.delenv("AETHERIS_TEST_SECRET", raising=False)
    with pytest.raises(ConfigurationError, match=r"\$AETHERIS_TEST_SECRET"):
        hook.secret_value()
    monkeypatch.setenv("AETHERIS_TEST_SECRET", "first")
    hook.authenticate(BODY, _lower(headers("first", BODY, time.time())), time.time())
    monkeypatch.setenv("AETHERIS_TEST_SECRET", "second")
    with pytest.raises(SignatureInvalid):
        hook.authenticate(BODY, _lower(headers("first", BODY, time.time())), time.time())


def _lower(values: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in values.items()}


# -- what a request yields --------------------------------------------------------------------


DOC = {"data": {"order_id": "o-1", "n": 42, "items": [{"sku": "A"}, {"sku": "B"}]}, "a/b": {"~": 1}}


@pytest.mark.parametrize(
    ("pointer", "value"),
    [
        ("/data/order_id", "o-1"),
        ("/data/items/1/sku", "B"),
        ("/a~1b/~0", 1),
        ("/data", DOC["data"]),
    ],
)
def test_a_json_pointer_finds_its_value(pointer: str, value: Any) -> None:
    assert resolve_pointer(DOC, pointer) == value


@pytest.mark.parametrize(
    "pointer", ["/data/missing", "/data/items/2/sku", "/data/items/01/sku", "/data/items/-"]
)
def test_a_json_pointer_with_no_value_names_itself(pointer: str) -> None:
    with pytest.raises(InvalidInput, match=f"no value at {pointer}"):
        resolve_pointer(DOC, pointer)


def test_the_key_of_a_request() -> None:
    hooks = Hooks()
    by_pointer = hooks.declare("paid", key="/data/order_id", secret="s")
    assert by_pointer.key_of(DOC, {}) == "o-1"
    assert hooks.declare("n", key="/data/n", secret="s").key_of(DOC, {}) == "42"
    for bad in (
        {"data": {"order_id": None}},
        {"data": {"order_id": 1.5}},
        {"data": {"order_id": "x" * 501}},
    ):
        with pytest.raises(InvalidInput, match="/data/order_id"):
            by_pointer.key_of(bad, {})
    by_header = hooks.declare("t", key=lambda body, headers: headers["x-ticket"], secret="s")
    assert by_header.key_of({}, {"x-ticket": "T-1"}) == "T-1"
    with pytest.raises(InvalidInput, match="key function raised KeyError"):
        by_header.key_of({}, {})
    wrong = hooks.declare("w", key=lambda body, headers: ["not", "a", "key"], secret="s")  # type: ignore[arg-type,return-value]
    with pytest.raises(InvalidInput, match="non-empty string"):
        wrong.key_of({}, {})


def test_the_signal_id_of_a_request() -> None:
    hook = Hooks().declare("paid", key="/id", secret="s")
    assert hook.signal_id({"id": 1}, {"idempotency-key": "k", "aetheris-event-id": "e"}) == "k"
    assert hook.signal_id({"id": 1}, {"aetheris-event-id": "e"}) == "e"
    by_body = hook.signal_id({"id": 1, "x": [1, 2]}, {})
    assert by_body.startswith("sha256:")
    assert hook.signal_id({"x": [1, 2], "id": 1}, {}) == by_body  # the same JSON, re-ordered
    assert hook.signal_id({"id": 2}, {}) != by_body
    with pytest.raises(InvalidInput, match="over 200"):
        hook.signal_id({}, {"idempotency-key": "k" * 201})
