"""The browser's session cookie: how it is set and cleared, in one place.

HttpOnly so that no script on the page can read the token back; SameSite=Strict so that no
other site's page makes the browser send it; Secure whenever the app is served over HTTPS.
"""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from app.security.origins import request_origin
from app.settings import Settings
from app.timeutil import utcnow

SESSION_COOKIE = "chat_session"


def cookie_is_secure(request: Request, settings: Settings) -> bool:
    if settings.session_cookie_secure is not None:
        return settings.session_cookie_secure
    forwarded = request_origin("http", "", request.headers.get("x-forwarded-proto"))
    return request.url.scheme == "https" or forwarded.startswith("https:")


def set_session_cookie(
    response: Response, request: Request, token: str, expires_at: datetime, settings: Settings
) -> None:
    if expires_at.tzinfo is None:  # SQLite hands back naive UTC
        expires_at = expires_at.replace(tzinfo=UTC)
    max_age = max(0, int((expires_at - utcnow()).total_seconds()))
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        path="/",
        secure=cookie_is_secure(request, settings),
        httponly=True,
        samesite="strict",
    )


def clear_session_cookie(response: Response, request: Request, settings: Settings) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        secure=cookie_is_secure(request, settings),
        httponly=True,
        samesite="strict",
    )
