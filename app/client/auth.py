"""Getting a token: `POST /api/auth/token` with a username and password."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from .errors import AuthenticationError, RealtimeError


def error_detail(response: httpx.Response) -> tuple[str, str]:
    """(code, message) from the API's `{"error": {"code", "message"}}` body, or a fallback."""
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status_code}", response.reason_phrase or "request failed"


async def sign_in(
    base_url: str,
    username: str,
    password: str,
    tenant: int | None = None,
    *,
    http: httpx.AsyncClient | None = None,
) -> str:
    """A fresh bearer token for `username`. Raises AuthenticationError on bad credentials
    (401), RealtimeError on any other refusal (429 throttled, 403 not a member of tenant)."""
    body: dict[str, Any] = {"username": username, "password": password}
    if tenant is not None:
        body["tenant"] = tenant
    url = base_url.rstrip("/") + "/api/auth/token"
    if http is None:
        async with httpx.AsyncClient(timeout=30.0) as own:
            response = await own.post(url, json=body)
    else:
        response = await http.post(url, json=body)
    if response.status_code == 200:
        return str(response.json()["access_token"])
    code, message = error_detail(response)
    if response.status_code == 401:
        raise AuthenticationError(f"sign-in failed for {username!r}: {message}")
    raise RealtimeError(
        f"sign-in for {username!r} refused (HTTP {response.status_code} {code}): {message}"
    )


def token_from_password(
    base_url: str, username: str, password: str, tenant: int | None = None
) -> Callable[[], Awaitable[str]]:
    """A `get_token` for RealtimeClient that signs in again whenever a token is needed."""

    async def get_token() -> str:
        return await sign_in(base_url, username, password, tenant)

    return get_token
