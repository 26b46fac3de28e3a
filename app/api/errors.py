"""Errors as JSON: `{"error": {"code", "message"}}` with the right status, never a 500 page."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any, TypedDict

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.db import DatabaseUnavailable
from app.domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    RateLimited,
    SignInBusy,
)
from app.realtime.broker.base import BrokerUnavailable

logger = logging.getLogger(__name__)

_STATUS_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


_FASTAPI_BODY_PARSE_ERROR = "There was an error parsing the body"
# After refusing a streamed body, read (and drop) this much more of it, so an ordinary
# client that is still sending gets to read the 413 instead of a reset connection.
_DRAIN_LIMIT_BYTES = 1024 * 1024
# ...and wait for it at most this long: a client that declares a body and sends nothing
# gets its 413 all the same.
_DRAIN_SECONDS = 5.0


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.details = details


def error_response(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    details: Any = None,
) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def _from_domain(exc: DomainError) -> ApiError:
    if isinstance(exc, NotAuthenticated):
        return ApiError(401, exc.code, exc.message, {"WWW-Authenticate": "Bearer"})
    if isinstance(exc, Forbidden):
        return ApiError(403, exc.code, exc.message)
    if isinstance(exc, NotFound):
        return ApiError(404, exc.code, exc.message)
    if isinstance(exc, InvalidInput):
        return ApiError(422, exc.code, exc.message)
    if isinstance(exc, Conflict):
        return ApiError(409, exc.code, exc.message)
    if isinstance(exc, RateLimited):
        return ApiError(429, exc.code, exc.message, {"Retry-After": str(exc.retry_after)})
    if isinstance(exc, SignInBusy):
        # The server is saturated, not the caller at fault: 503, like a busy database.
        return ApiError(503, exc.code, exc.message, {"Retry-After": str(exc.retry_after)})
    return ApiError(400, exc.code, exc.message)


class _ValidationDetail(TypedDict):
    loc: list[str]
    message: str


def _validation_details(
    exc: RequestValidationError,
) -> tuple[int, str, str, list[_ValidationDetail]]:
    details = [
        _ValidationDetail(
            loc=[str(part) for part in err.get("loc", ())], message=err.get("msg", "")
        )
        for err in exc.errors()
    ]
    if any(err.get("type") == "json_invalid" for err in exc.errors()):
        return 400, "malformed_json", "The request body is not valid JSON.", details
    first = details[0] if details else _ValidationDetail(loc=[], message="invalid request")
    where = ".".join(p for p in first["loc"] if p not in {"body", "query", "path"})
    message = f"{where}: {first['message']}" if where else first["message"]
    return 422, "invalid_request", message, details


def install_error_handlers(api: FastAPI) -> None:
    @api.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers, exc.details)

    @api.exception_handler(DomainError)
    async def _domain_error(_: Request, exc: DomainError) -> JSONResponse:
        err = _from_domain(exc)
        return error_response(err.status, err.code, err.message, err.headers)

    @api.exception_handler(DatabaseUnavailable)
    async def _database_unavailable(_: Request, exc: DatabaseUnavailable) -> JSONResponse:
        logger.warning("database unavailable: %s", exc)
        return error_response(
            503,
            "database_unavailable",
            "The database is busy; retry shortly.",
            {"Retry-After": "1"},
        )

    @api.exception_handler(BrokerUnavailable)
    async def _broker_unavailable(_: Request, exc: BrokerUnavailable) -> JSONResponse:
        logger.warning("broker unavailable: %s", exc)
        return error_response(
            503,
            "realtime_unavailable",
            "Live delivery is unavailable; retry shortly.",
            {"Retry-After": "2"},
        )

    @api.exception_handler(RedisError)
    async def _redis_unavailable(_: Request, exc: RedisError) -> JSONResponse:
        # Sign-in refuses rather than lose its brute-force protection during an outage.
        logger.warning("Redis unavailable: %s", exc)
        return error_response(
            503,
            "unavailable",
            "A backing service is unavailable; retry shortly.",
            {"Retry-After": "2"},
        )

    @api.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, code, message, details = _validation_details(exc)
        return error_response(status, code, message, details=details)

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _FASTAPI_BODY_PARSE_ERROR:
            # Raised by FastAPI for bodies json.loads rejects outright: not UTF-8, or
            # nested past the recursion limit.
            return error_response(
                400, "malformed_json", "The request body is not valid UTF-8 JSON."
            )
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(exc.status_code, code, message, exc.headers)

    @api.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "Something went wrong on our side.")


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"The request body is larger than {max_bytes} bytes.")


class BodySizeLimit:
    """Refuses API request bodies above `max_bytes`, declared or streamed (chunked)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, prefix: str) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                too_large = True
            if too_large:
                # Refused on its declared length, but read (and dropped) as a streamed one
                # is: answering while the client still sends closes on unread bytes, a
                # reset that can reach the client before our 413 does.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_DRAIN_SECONDS):
                        await _drain(receive, {"more_body": True})
                await self._refuse(scope, receive, send)
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    await _drain(receive, message)
                    # FastAPI re-raises HTTPException subclasses from body parsing as they are.
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, "payload_too_large", f"The request body is larger than {self.max_bytes} bytes."
        )
        await response(scope, receive, send)


async def _drain(receive: Receive, message: Message) -> None:
    drained = 0
    while message.get("more_body", False) and drained < _DRAIN_LIMIT_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
