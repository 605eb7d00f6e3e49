"""Incoming webhooks: ``POST /v1/hooks/{name}`` turns a verified request into a keyed signal.

A payment provider or a ticketing system cannot know which job waits for its event; it knows
its own ids (an order, a ticket). So a hook is declared with where its correlation key is in
the request, and an agent waits on that key::

    app.hook("paid", key="/data/order_id", secret_env="PAYMENTS_HOOK_SECRET")

    @app.agent
    async def order(ctx: Context, order_id: str) -> dict:
        event = await ctx.wait_for_signal("paid", key=order_id, timeout=86_400)

A request to the hook is authenticated by its signature (:mod:`aetheris.signing`; the API key
of the other endpoints is not used), its JSON body is the signal's payload, and the store
delivers it to the job of the hook's tenant that holds the key, or keeps it until a job waits
on the key (:meth:`~aetheris.store.port.Store.deliver_keyed`). The signal's id, which makes a
provider's retries one signal, is the request's ``Idempotency-Key`` or ``Aetheris-Event-Id``
header, else a hash of the body; its sender, as the job's journal records it, is
``hook:<name>``.

A hook without a secret accepts requests from anyone who can reach the server, and lets them
wake any job waiting on a key they can guess: it is refused unless declared with
``insecure=True``, for a network where only trusted senders reach the server.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Required, TypedDict

from aetheris.errors import ConfigurationError, InvalidInput
from aetheris.journal import canonical, check_text, sha256_hex
from aetheris.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from aetheris.store.port import DEFAULT_TENANT, Delivery, Store

KeyFunction = Callable[[Any, Mapping[str, str]], str]
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
MAX_KEY = 500  # characters of a correlation key
MAX_ID = 200  # characters of a signal id from a header
ID_HEADERS = ("idempotency-key", "aetheris-event-id")  # where a signal's id comes from


class HookOptions(TypedDict, total=False):
    """The options of :meth:`Hooks.declare` (and ``App.hook``) after the name."""

    key: Required[str | KeyFunction]
    secret: str | None
    secret_env: str | None
    tenant: str
    signature: Literal["aetheris", "none"]
    insecure: bool


@dataclass(frozen=True, slots=True)
class Hook:
    """A declared incoming webhook (see the module's documentation).

    ``key`` is a JSON pointer into the body (``/data/order_id``) or a function of the body
    and the request's headers (lower-case names) that returns the key; ``signed`` is false
    only for a hook declared ``insecure``.
    """

    name: str
    key: str | KeyFunction
    tenant: str
    secret: str | None
    secret_env: str | None
    signed: bool

    @property
    def sender(self) -> str:
        """Who sent its signals, as journals record it."""
        return f"hook:{self.name}"

    def secret_value(self) -> str:
        """The shared secret (read from the environment each time, when it lives there)."""
        if self.secret is not None:
            return self.secret
        value = os.environ.get(self.secret_env or "")
        if not value:
            raise ConfigurationError(
                f"hook {self.name!r}: its secret is read from ${self.secret_env}, which is not set"
            )
        return value

    def authenticate(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        """Raise :class:`~aetheris.errors.SignatureInvalid` unless the request is signed with
        the hook's secret, recently (``now``: the server's clock)."""
        if not self.signed:
            return
        timestamp = headers.get(TIMESTAMP_HEADER.lower())
        signature = headers.get(SIGNATURE_HEADER.lower())
        verify(self.secret_value(), timestamp, signature, body, now=now)

    def key_of(self, payload: Any, headers: Mapping[str, str]) -> str:
        """The request's correlation key (:class:`~aetheris.errors.InvalidInput` naming what
        is wrong when there is none)."""
        if isinstance(self.key, str):
            where = f"at {self.key}"
            value = resolve_pointer(payload, self.key)
        else:
            where = "from the hook's key function"
            try:
                value = self.key(payload, headers)
            except Exception as exc:
                raise InvalidInput(
                    f"hook {self.name!r}: no key in this request: its key function raised "
                    f"{type(exc).__name__}: {exc}"
                ) from None
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value or len(value) > MAX_KEY:
            raise InvalidInput(
                f"hook {self.name!r}: the key {where} must be a non-empty string (or an "
                f"integer) of at most {MAX_KEY} characters, not {_shown(value)}"
            )
        return check_text(value, f"the key {where}")

    def signal_id(self, payload: Any, headers: Mapping[str, str]) -> str:
        """The signal's id: the sender's event id header, else the hash of the body."""
        for header in ID_HEADERS:
            value = headers.get(header)
            if value:
                if len(value) > MAX_ID:
                    raise InvalidInput(f"the {header} header is over {MAX_ID} characters")
                return check_text(value, f"the {header} header")
        return "sha256:" + sha256_hex(canonical(payload))

    async def deliver(self, store: Store, payload: Any, key: str, signal_id: str) -> Delivery:
        """Deliver the request's payload as signal ``name`` correlated by ``key``."""
        return await store.deliver_keyed(
            self.tenant, self.name, key, payload, signal_id, self.sender
        )


class Hooks:
    """The incoming webhooks an App declares, by name."""

    def __init__(self) -> None:
        self._hooks: dict[str, Hook] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._hooks

    def get(self, name: str) -> Hook | None:
        return self._hooks.get(name)

    @property
    def names(self) -> list[str]:
        return sorted(self._hooks)

    def declare(
        self,
        name: str,
        *,
        key: str | KeyFunction,
        secret: str | None = None,
        secret_env: str | None = None,
        tenant: str = DEFAULT_TENANT,
        signature: Literal["aetheris", "none"] = "aetheris",
        insecure: bool = False,
    ) -> Hook:
        """Declare ``POST /v1/hooks/{name}``: each verified request is signal ``name`` for
        the job of ``tenant`` waiting on the request's key
        (``ctx.wait_for_signal(name, key=...)``).

        ``key``: a JSON pointer into the body (``"/data/order_id"``), or a function
        ``(body, headers) -> str``. ``secret`` (or ``secret_env``, the environment variable
        that holds it, read on each request) verifies the ``aetheris`` signature
        (:mod:`aetheris.signing`). A hook with no secret (or ``signature="none"``) accepts
        unsigned requests from anyone who reaches the server, and is refused unless
        ``insecure=True`` says that is meant.
        """
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ConfigurationError(
                f"hook name {name!r}: letters, digits, '_', '.' and '-' (up to 100), "
                "starting with a letter or digit: it is a path segment of /v1/hooks/{name}"
            )
        if name in self._hooks:
            raise ConfigurationError(f"hook {name!r} is already declared")
        _check_key(name, key)
        _check_text_option(name, "tenant", tenant)
        signed = _signed(name, secret, secret_env, signature, insecure)
        hook = Hook(name, key, tenant, secret, secret_env, signed)
        self._hooks[name] = hook
        return hook


def _check_key(name: str, key: object) -> None:
    if callable(key):
        return
    if not isinstance(key, str) or not key.startswith("/") or re.search(r"~[^01]|~$", key):
        raise ConfigurationError(
            f"hook {name!r}: key must be a JSON pointer into the body (like "
            f"'/data/order_id'; '~1' for '/' and '~0' for '~' in a name) or a function "
            f"(body, headers) -> str, not {key!r}"
        )


def _check_text_option(name: str, what: str, value: object) -> None:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ConfigurationError(f"hook {name!r}: {what} must be a non-empty string")


def _signed(
    name: str, secret: str | None, secret_env: str | None, signature: str, insecure: bool
) -> bool:
    """Whether the hook verifies signatures; refuses options that contradict each other."""
    if signature not in ("aetheris", "none"):
        raise ConfigurationError(f"hook {name!r}: signature is 'aetheris' or 'none'")
    if secret is not None and secret_env is not None:
        raise ConfigurationError(f"hook {name!r}: give secret or secret_env, not both")
    for what, value in (("secret", secret), ("secret_env", secret_env)):
        if value is not None:
            _check_text_option(name, what, value)
    has_secret = secret is not None or secret_env is not None
    if signature == "none" and has_secret:
        raise ConfigurationError(f"hook {name!r}: signature='none' verifies no secret")
    if has_secret:
        if insecure:
            raise ConfigurationError(
                f"hook {name!r}: insecure=True is for a hook without a secret; this one has one"
            )
        return True
    if not insecure:
        raise ConfigurationError(
            f"hook {name!r} has no secret: give secret= or secret_env= (the sender signs "
            "each request with it), or pass insecure=True to accept unsigned requests, "
            "with which anyone who reaches the server can wake the jobs waiting on a key"
        )
    return False


def resolve_pointer(document: Any, pointer: str) -> Any:
    """The value at a JSON pointer (RFC 6901) in ``document``; :class:`InvalidInput` naming
    the pointer when there is none."""
    node = document
    for raw in pointer.split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and _index(token, len(node)) is not None:
            node = node[int(token)]
        else:
            raise InvalidInput(f"the request body has no value at {pointer}")
    return node


def _index(token: str, length: int) -> int | None:
    if not token.isascii() or not token.isdigit() or (token.startswith("0") and token != "0"):
        return None
    return int(token) if int(token) < length else None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
