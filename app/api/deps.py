"""Request dependencies: the runtime, the caller's address, the authenticated principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.api.errors import ApiError
from app.domain.principal import Principal
from app.runtime import Runtime, get_runtime

SESSION_COOKIE = "chat_session"

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise _unauthenticated("The Authorization header must be 'Bearer <token>'.")
    return value.strip()


def _unauthenticated(message: str) -> ApiError:
    return ApiError(401, "not_authenticated", message, {"WWW-Authenticate": "Bearer"})


async def _principal_from(runtime: Runtime, token: str | None) -> Principal:
    if token is None:
        raise _unauthenticated("Sign in first: send 'Authorization: Bearer <token>'.")
    principal = await runtime.accounts.principal_for_token(token)
    if principal is None:
        raise _unauthenticated("The token is unknown, expired or revoked.")
    return principal


async def current_principal(request: Request, runtime: RuntimeDep) -> Principal:
    """Bearer header only: a token in a URL ends up in logs, so REST never accepts one."""
    return await _principal_from(runtime, bearer_token(request))


async def stream_principal(request: Request, runtime: RuntimeDep) -> Principal:
    """For /api/sse: the header, else `?access_token=` (EventSource sets no headers), else
    the session cookie."""
    token = (
        bearer_token(request)
        or request.query_params.get("access_token")
        or request.cookies.get(SESSION_COOKIE)
    )
    return await _principal_from(runtime, token)


async def active_principal(
    principal: Annotated[Principal, Depends(current_principal)], runtime: RuntimeDep
) -> Principal:
    """The caller, who just did something: that keeps them from turning away."""
    runtime.presence.touch(principal)
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]
ActivePrincipalDep = Annotated[Principal, Depends(active_principal)]
StreamPrincipalDep = Annotated[Principal, Depends(stream_principal)]
