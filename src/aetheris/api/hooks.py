"""Incoming webhooks over HTTP: ``POST /v1/hooks/{name}`` (see :mod:`aetheris.hooks`).

No API key: the request's signature authenticates it. The answers, in the order they are
checked: 404 for a hook the App does not declare, 401 for a signature that is missing, wrong or
expired, 400 for a body that is not JSON, 422 for one with no key where the hook looks for it,
413 for one over the size limit (before anything else); else 202 with where the signal went.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request

from aetheris.api.errors import ApiError
from aetheris.api.jobs import Aetheris
from aetheris.api.schemas import NAME, HookAccepted
from aetheris.errors import ConfigurationError

router = APIRouter(prefix="/v1", tags=["hooks"])
MAX_DEPTH = 64  # levels of arrays and objects in a body
log = logging.getLogger("aetheris.api")
_ANY_JSON = {
    "required": True,
    "content": {"application/json": {"schema": {"description": "Any JSON: the payload."}}},
}
_SAME_ID = "The event's id: the same id again is the same signal."


@router.post(
    "/hooks/{name}",
    status_code=202,
    response_model=HookAccepted,
    openapi_extra={"requestBody": _ANY_JSON},
)
async def receive_hook(
    name: Annotated[str, Path(pattern=NAME, description="The hook's name.")],
    request: Request,
    app: Aetheris,
    idempotency_key: Annotated[str | None, Header(pattern=NAME, description=_SAME_ID)] = None,
    aetheris_event_id: Annotated[str | None, Header(pattern=NAME, description=_SAME_ID)] = None,
    aetheris_timestamp: Annotated[str | None, Header(description="Unix seconds.")] = None,
    aetheris_signature: Annotated[str | None, Header(description="v1=<hex HMAC>")] = None,
) -> HookAccepted:
    """Deliver the body as signal ``name`` to the job waiting on its key (202), or keep it
    until a job waits on that key. Authenticated by its signature, not by an API key."""
    hook = app.hooks.get(name)
    if hook is None:
        raise ApiError(404, "not_found", f"no hook named {name!r}")
    body = await request.body()
    headers = dict(request.headers)  # lower-case names
    try:
        hook.authenticate(body, headers, app.clock.time())
    except ConfigurationError as exc:
        log.error("%s", exc)
        message = f"hook {name!r} is not configured on this server"
        raise ApiError(503, "unavailable", message) from None
    payload = _json(body)
    key = hook.key_of(payload, headers)
    delivery = await hook.deliver(
        await app.open_store(), payload, key, hook.signal_id(payload, headers)
    )
    if delivery.job_id is not None and delivery.created:
        app.doorbell.ring()
    return HookAccepted(
        signal_id=delivery.signal_id, delivered_to=delivery.job_id, created=delivery.created
    )


def _json(body: bytes) -> Any:
    """The body's JSON value: 400 if it is not JSON, 422 if it nests deeper than MAX_DEPTH
    (which no webhook does, and which recursive encoders could not take)."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    too_deep = ApiError(422, "invalid_input", f"the request body nests over {MAX_DEPTH} levels")
    try:
        payload = json.loads(body, parse_constant=refuse)
    except RecursionError:
        raise too_deep from None
    except ValueError as exc:
        detail = {"problem": str(exc)[:200]}
        raise ApiError(400, "bad_request", "the request body is not JSON", detail) from None
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise too_deep
        inner = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in inner if isinstance(child, dict | list))
    return payload
