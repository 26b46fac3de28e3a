"""Request dependencies: the runtime, the caller's address, the authenticated principal.

Routes reach the runtime as the pages do, through `app.runtime.get_runtime()`: `RuntimeDep`
only wraps that accessor in FastAPI's `Depends` (see app/runtime.py's docstring).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.api.errors import ApiError
from app.api.session_cookie import SESSION_COOKIE
from app.domain.principal import Principal
from app.runtime import Runtime, get_runtime
from app.security.origins import OriginPolicy, request_origin


async def current_runtime() -> Runtime:
    """`get_runtime()` as a dependency. Async on purpose: FastAPI runs a sync dependency in
    its thread pool, a hop per request that was most of the cost of opening a stream
    (0.2 ms of 0.45, in-process)."""
    return get_runtime()


RuntimeDep = Annotated[Runtime, Depends(current_runtime)]


def client_address(request: Request) -> str:
    """The caller's address: behind a trusted proxy, the client it forwarded for
    (app/security/proxies.py rewrote the scope); never a header read here."""
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
        runtime.metrics.auth_failure("missing_token")
        raise _unauthenticated("Sign in first: send 'Authorization: Bearer <token>'.")
    principal = await runtime.accounts.principal_for_token(token)
    if principal is None:
        runtime.metrics.auth_failure("invalid_token")
        raise _unauthenticated("The token is unknown, expired or revoked.")
    return principal


async def current_principal(request: Request, runtime: RuntimeDep) -> Principal:
    """Bearer header only: a token in a URL ends up in logs, so REST never accepts one."""
    return await _principal_from(runtime, bearer_token(request))


async def stream_principal(request: Request, runtime: RuntimeDep) -> Principal:
    """For /api/sse: the header, else `?access_token=` (EventSource sets no headers), else
    the session cookie."""
    token = bearer_token(request) or request.query_params.get("access_token")
    if token is None and SESSION_COOKIE in request.cookies:
        # The browser attaches cookies by itself: only a page we trust may use them.
        require_trusted_origin(request, runtime)
        token = request.cookies[SESSION_COOKIE]
    return await _principal_from(runtime, token)


def origin_policy(request: Request, runtime: Runtime) -> OriginPolicy:
    """The policy app/app.py installed (it knows the frontend's origin), else the settings'."""
    policy = getattr(request.app.state, "origin_policy", None)
    if policy is None:
        policy = OriginPolicy.build(runtime.settings.cors_allowed_origins, ())
    return policy


def own_origin(request: Request) -> str:
    """The origin of the app's own pages, as seen by this request (behind a TLS proxy too)."""
    return request_origin(
        request.url.scheme,
        request.headers.get("host", ""),
        request.headers.get("x-forwarded-proto"),
    )


def require_trusted_origin(request: Request, runtime: Runtime) -> None:
    """CSRF defence for every cookie-authenticated request: the page that sent it must be
    ours or one the operator trusts. Programs send no Origin and are not affected."""
    origin = request.headers.get("origin")
    if origin is None and request.headers.get("sec-fetch-site") == "cross-site":
        origin = "null"  # a cross-site request that hid its origin
    if not origin_policy(request, runtime).allows(origin, own_origin(request)):
        runtime.metrics.auth_failure("untrusted_origin")
        raise ApiError(
            403,
            "untrusted_origin",
            "Cookie-authenticated requests are accepted only from this app's own pages.",
        )


async def active_principal(
    principal: Annotated[Principal, Depends(current_principal)], runtime: RuntimeDep
) -> Principal:
    """The caller, who just did something: that keeps them from turning away."""
    runtime.presence.touch(principal)
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]
ActivePrincipalDep = Annotated[Principal, Depends(active_principal)]
StreamPrincipalDep = Annotated[Principal, Depends(stream_principal)]
