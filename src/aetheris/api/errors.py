"""One error body for every refusal: ``{"error": {"code", "message", "details"}}``.

Errors of the runtime map to statuses here, once: a malformed request is a 4xx with the
reason, never a 5xx and never a stack trace. Anything unexpected is logged on the server and
answered with a bare 500 that names no internals.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from aetheris.errors import (
    AetherisError,
    BundleError,
    Conflict,
    IdempotencyConflict,
    InvalidInput,
    JobNotFound,
    SchemaMismatch,
    SignatureInvalid,
    StoreUnavailable,
    UnknownAgent,
    WebhookNotFound,
)

log = logging.getLogger("aetheris.api")

# Statuses by the HTTP layer's own refusals (routing, methods), by code.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    503: "unavailable",
}

# The runtime's errors, most specific first: (type, status, code).
_RUNTIME: list[tuple[type[BaseException], int, str]] = [
    (JobNotFound, 404, "not_found"),
    (WebhookNotFound, 404, "not_found"),
    (SignatureInvalid, 401, "invalid_signature"),
    (UnknownAgent, 422, "unknown_agent"),
    (IdempotencyConflict, 409, "idempotency_conflict"),
    (Conflict, 409, "conflict"),
    (InvalidInput, 422, "invalid_input"),
    (BundleError, 422, "invalid_input"),
    (SchemaMismatch, 503, "unavailable"),
    (StoreUnavailable, 503, "unavailable"),
]


class ApiError(Exception):
    """A refusal of the API itself (auth, roles, bad parameters)."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        super().__init__(message)


def not_found(job_id: str) -> ApiError:
    """The same answer for a job that does not exist and one of another tenant."""
    return ApiError(404, "not_found", f"job {job_id!r} not found", {"job_id": job_id})


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def respond(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> Any:
    # An API key is what a 401 asks for, but for a webhook's signature (which no key replaces).
    headers = {"WWW-Authenticate": "Bearer"} if code == "unauthorized" else None
    return JSONResponse(error_body(code, message, details), status, headers=headers)


def _validation_details(exc: RequestValidationError) -> tuple[int, dict[str, Any]]:
    problems = []
    malformed = False
    for error in exc.errors():
        malformed = malformed or error.get("type") == "json_invalid"
        where = ".".join(str(part) for part in error.get("loc", ()))
        problems.append({"at": where, "problem": str(error.get("msg", "invalid"))})
    return (400 if malformed else 422), {"errors": problems}


def install(api: FastAPI) -> None:
    """Register the handlers that turn every refusal into the one error body."""

    @api.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> Any:
        return respond(exc.status, exc.code, exc.message, exc.details)

    @api.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Any:
        status, details = _validation_details(exc)
        code = "bad_request" if status == 400 else "invalid_input"
        message = "the request body is not valid JSON" if status == 400 else "invalid request"
        return respond(status, code, message, details)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Any:
        code = _HTTP_CODES.get(exc.status_code, "error")
        return respond(exc.status_code, code, str(exc.detail))

    @api.exception_handler(AetherisError)
    async def runtime_error(_: Request, exc: AetherisError) -> Any:
        for kind, status, code in _RUNTIME:
            if isinstance(exc, kind):
                return respond(status, code, str(exc))
        log.exception("unexpected error", exc_info=exc)
        return respond(500, "internal", "the server failed; the error is in its log")

    @api.exception_handler(UnicodeError)
    async def unencodable(_: Request, exc: UnicodeError) -> Any:
        # A lone surrogate in a JSON string decodes, but has no UTF-8 form to store.
        return respond(422, "invalid_input", "text that is not valid Unicode (lone surrogate)")

    @api.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> Any:
        log.exception("unexpected error", exc_info=exc)
        return respond(500, "internal", "the server failed; the error is in its log")
