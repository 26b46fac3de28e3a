"""POST /api/auth/token, POST /api/auth/logout, the browser session cookie, GET /api/me."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from app.api.deps import (
    SESSION_COOKIE,
    PrincipalDep,
    RuntimeDep,
    bearer_token,
    client_address,
    require_trusted_origin,
)
from app.api.errors import ApiError
from app.api.params import invalid_tenant, parse_tenant
from app.api.schemas import TokenRequest, TokenResponse, UserOut
from app.api.session_cookie import clear_session_cookie, set_session_cookie
from app.domain.errors import DomainError
from app.metrics import sign_in_failure_reason

router = APIRouter(prefix="/api", tags=["auth"])


async def _read_token_request(request: Request) -> TokenRequest:
    """JSON, or the OAuth 2.0 password flow's form (`grant_type=password`)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw: Any
    if content_type in {"application/x-www-form-urlencoded", "multipart/form-data"}:
        form = await request.form()
        grant_type = form.get("grant_type")
        if grant_type not in (None, "password"):
            raise ApiError(400, "unsupported_grant_type", "Only grant_type=password is supported.")
        raw = {key: form.get(key) for key in ("username", "password") if key in form}
        tenant = form.get("tenant")
        if isinstance(tenant, str) and tenant:
            raw["tenant"] = parse_tenant(tenant)
    elif content_type in {"application/json", ""}:
        body = await request.body()
        try:
            return TokenRequest.model_validate_json(body)
        except ValidationError as exc:
            raise _invalid(exc) from None
    else:
        raise ApiError(415, "unsupported_media_type", "Send JSON or a URL-encoded form.")
    try:
        return TokenRequest.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(exc) from None


def _invalid(exc: ValidationError) -> ApiError:
    first = exc.errors()[0]
    if first["type"] in {"json_invalid", "json_type"}:
        return ApiError(400, "malformed_json", "The request body is not a valid JSON object.")
    if tuple(first["loc"]) == ("tenant",):
        # A JSON `tenant` that is no id gets the answer a form's or /api/sse's does.
        return invalid_tenant()
    where = ".".join(str(p) for p in first["loc"])
    return ApiError(422, "invalid_request", f"{where}: {first['msg']}" if where else first["msg"])


@router.post("/auth/token", response_model=TokenResponse)
async def issue_token(request: Request, runtime: RuntimeDep) -> TokenResponse:
    body = await _read_token_request(request)
    try:
        grant = await runtime.accounts.sign_in(
            body.username, body.password, client_address(request), tenant_id=body.tenant
        )
    except DomainError as exc:
        runtime.metrics.auth_failure(sign_in_failure_reason(exc))
        raise
    return TokenResponse(
        access_token=grant.access_token,
        expires_in=grant.expires_in,
        user=UserOut.of(grant.principal),
    )


@router.post("/auth/session", status_code=204)
async def open_browser_session(
    request: Request, principal: PrincipalDep, runtime: RuntimeDep
) -> Response:
    """Turn a bearer token into the browser's session cookie (HttpOnly: page scripts cannot
    read it back). The app's sign-in page calls this once; /api/sse then accepts the cookie."""
    require_trusted_origin(request, runtime)
    token = bearer_token(request)
    assert token is not None  # PrincipalDep checked it
    response = Response(status_code=204)
    set_session_cookie(response, request, token, principal.expires_at, runtime.settings)
    return response


@router.delete("/auth/session", status_code=204)
async def close_browser_session(request: Request, runtime: RuntimeDep) -> Response:
    """Sign the browser out: revoke the cookie's token (if still valid) and drop the cookie."""
    require_trusted_origin(request, runtime)
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        principal = await runtime.accounts.principal_for_token(token)
        if principal is not None:
            await runtime.accounts.sign_out(principal)
    response = Response(status_code=204)
    clear_session_cookie(response, request, runtime.settings)
    return response


@router.post("/auth/logout", status_code=204)
async def logout(principal: PrincipalDep, runtime: RuntimeDep) -> Response:
    await runtime.accounts.sign_out(principal)
    return Response(status_code=204)


@router.get("/me", response_model=UserOut)
async def me(principal: PrincipalDep) -> UserOut:
    return UserOut.of(principal)
