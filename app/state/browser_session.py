"""The browser half of the session cookie (see app/api/session_cookie.py).

The cookie is HttpOnly, so page scripts cannot write it either: after signing in, the tab
asks the API to set it (POST /api/auth/session, with the token once in its Authorization
header) and, when signing out, to revoke and drop it. Reading it back needs no script: the
browser sends it with the websocket handshake of every new tab, where the state finds it.

No secret at rest: Reflex saves each socket's handshake headers in the page state's router
data (pickled to `.states/` on disk, or to Redis), and this module is where they are made
safe to keep. The handshake's session cookie is replaced by its SHA-256 digest before
Reflex sees it (`_keep_no_credentials_in_router_data`), so the state only ever holds the
digest, which no public entry point accepts (each hashes what it is given).
"""

from __future__ import annotations

import json
from http.cookies import CookieError, SimpleCookie
from typing import Any

import reflex as rx
from reflex.app import EventNamespace
from reflex_base.constants import RouteVar

from app.api.session_cookie import SESSION_COOKIE
from app.security.tokens import token_digest

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


def store_session_cookie(token: str, *, reload_after: bool = False, stored: str = "") -> str:
    """`stored`: a script to run once the cookie is set (before the reload, if any)."""
    then = f".then(() => {{ {stored} }})" if stored else ""
    if reload_after:
        then += ".finally(() => window.location.reload())"
    return _session_request("POST", {"Authorization": f"Bearer {token}"}, then)


# Where a tab that switched workspace leaves word, once the cookie holds the new session,
# for the user's other tabs, which the switch signed out of the old one: they wait for it,
# reload into the new workspace and say why (assets/live_store.js reads it).
WORKSPACE_SWITCH_KEY = "chat:workspace-switch"


def note_workspace_switch(tenant_name: str) -> str:
    note = "JSON.stringify({name: %s, at: Date.now(), tab: sessionStorage.getItem('chat:tab')})"
    return f"localStorage.setItem({json.dumps(WORKSPACE_SWITCH_KEY)}, {note % json.dumps(tenant_name)});"


def drop_session_cookie() -> str:
    return _session_request("DELETE", {})


def session_digest_from(cookie_header: str) -> str | None:
    """The session cookie's digest in a tab's handshake `Cookie:` header, if any (the
    handshake filter below put the digest there in place of the token)."""
    return session_token_from(cookie_header)


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


# Handshake headers that carry credentials of any kind; Reflex would save them with the state.
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


def without_credentials(headers: dict[str, str]) -> dict[str, str]:
    """A websocket handshake's headers as they may be kept: no Authorization, no cookie but
    the session cookie, whose value becomes its digest. Whatever a client sends there is
    hashed, so a digest it might have found somewhere is not accepted as a session."""
    kept = {
        name: value for name, value in headers.items() if name.lower() not in _CREDENTIAL_HEADERS
    }
    token = session_token_from(headers.get("cookie", ""))
    if token:
        kept["cookie"] = f"{SESSION_COOKIE}={token_digest(token)}"
    return kept


def _keep_no_credentials_in_router_data() -> None:
    """Filter every socket's handshake headers before Reflex stores them.

    Reflex 0.10.1 builds a socket's router data once, at connect, in
    EventNamespace._build_static_router_data, and merges it into every event (and so into
    the saved state). Wrapping that one method covers the page's handshake, every event and
    every background task, whatever the state manager.
    """
    build = getattr(EventNamespace, "_build_static_router_data", None)
    if build is None:  # a Reflex upgrade moved it: refuse to start rather than keep tokens
        raise RuntimeError("Reflex's EventNamespace._build_static_router_data is gone")
    if getattr(build, "keeps_no_credentials", False):
        return

    def build_without_credentials(self: EventNamespace, sid: str, environ: dict) -> dict[str, Any]:
        router_data = build(self, sid, environ)
        headers = router_data.get(RouteVar.HEADERS)
        if isinstance(headers, dict):
            router_data[RouteVar.HEADERS] = without_credentials(headers)
        return router_data

    build_without_credentials.keeps_no_credentials = True  # type: ignore[attr-defined]  # a marker read back with getattr() above
    EventNamespace._build_static_router_data = (  # type: ignore[method-assign]  # patched on purpose; the check above finds it
        build_without_credentials
    )


# At import: app/state/session.py imports this module, and the app imports its states
# before it serves any socket.
_keep_no_credentials_in_router_data()
