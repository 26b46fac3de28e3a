"""The browser half of the session cookie (see app/api/session_cookie.py).

The cookie is HttpOnly, so page scripts cannot write it either: after signing in, the tab
asks the API to set it (POST /api/auth/session, with the token once in its Authorization
header) and, when signing out, to revoke and drop it. Reading it back needs no script: the
browser sends it with the websocket handshake of every new tab, where the state finds it.
"""

from __future__ import annotations

import json
from http.cookies import CookieError, SimpleCookie

import reflex as rx

from app.api.session_cookie import SESSION_COOKIE

# Reflex's own rule (getBackendURL in state.js): a backend on localhost is reached on the
# page's hostname, and through the page's HTTPS port when the page is served over HTTPS.
_SESSION_REQUEST = """(() => {{
  const url = new URL("/api/auth/session", {api_url});
  if (["localhost", "127.0.0.1", "0.0.0.0", "[::1]"].includes(url.hostname)) {{
    url.hostname = window.location.hostname;
    if (window.location.protocol === "https:") {{ url.protocol = "https:"; url.port = ""; }}
  }}
  return fetch(url, {{method: {method}, credentials: "include", headers: {headers}}})
    .catch(() => null){then};
}})()"""


def _session_request(method: str, headers: dict[str, str], then: str = "") -> str:
    return _SESSION_REQUEST.format(
        api_url=json.dumps(rx.config.get_config().api_url),
        method=json.dumps(method),
        headers=json.dumps(headers),
        then=then,
    )


def store_session_cookie(token: str, *, reload_after: bool = False) -> str:
    then = ".finally(() => window.location.reload())" if reload_after else ""
    return _session_request("POST", {"Authorization": f"Bearer {token}"}, then)


def drop_session_cookie() -> str:
    return _session_request("DELETE", {})


def session_token_from(cookie_header: str) -> str | None:
    """The token in a `Cookie:` header, if any."""
    if not cookie_header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(cookie_header)
    except CookieError:
        return None
    morsel = jar.get(SESSION_COOKIE)
    return morsel.value if morsel is not None and morsel.value else None
