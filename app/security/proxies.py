"""Who the client is behind a reverse proxy: one decision for every start of the app.

The app's caller is a proxy whenever one stands in front (deploy/nginx.conf). Its
`X-Forwarded-For` and `X-Forwarded-Proto` are believed only when the connection comes from
an address in TRUSTED_PROXIES; the client is then the rightmost address of the chain that is
not a trusted proxy (each proxy appends the address it saw, and only the part our own
proxies wrote can be believed). Everything that asks "who is calling" reads the ASGI scope
this layer rewrote: the sign-in throttle's per-address budget, `/metrics`' loopback check,
the session cookie's Secure flag and the Reflex websocket's `client_ip`.

Deliberate choices:
- uvicorn's maintained `ProxyHeadersMiddleware` does the parsing; scripts/serve turns
  uvicorn's own copy of it off (`--no-proxy-headers`), which trusted 127.0.0.1 by default,
  and granian (`reflex run`) has none: before this layer the two starts disagreed.
- Empty TRUSTED_PROXIES adds no layer at all: no forwarded header is believed.
- Applying the layer twice (scripts/serve wraps its websocket shortcut too) changes nothing:
  after the first pass the client is an untrusted address, which the second leaves alone.
"""

from __future__ import annotations

from typing import cast

from starlette.types import ASGIApp
from uvicorn._types import ASGI3Application
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware


def behind_trusted_proxies(app: ASGIApp, trusted_proxies: tuple[str, ...]) -> ASGIApp:
    """`app`, with the client address and scheme taken from the headers of trusted proxies."""
    if not trusted_proxies:
        return app
    # Both are the ASGI 3 callable; the two libraries spell its type differently.
    layer = ProxyHeadersMiddleware(cast(ASGI3Application, app), list(trusted_proxies))
    return cast(ASGIApp, layer)
