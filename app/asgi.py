"""The production entry point (scripts/serve): the Reflex app, with the event stream's live
part and the page's websocket past the middleware stack.

A stream lives for hours, and everything on its call path lives with it. `GET /api/sse`
runs the whole app as under every other start (the same route, checks, errors, CORS headers
and opening bytes); once the stream is open, its live part continues here, past the
middleware, on uvicorn's own send (app/api/sse_response.py, StreamHandoff). A chat tab's
websocket lives as long, so it goes straight to the mount Reflex serves it from (13 kB less
per open tab, measured with bench/page_path.py's idle tabs): none of the API's middleware
acts on a websocket (CORS and the body limit are for HTTP; engine.io checks the socket's
Origin against the same policy, app/app.py). Under `reflex run` this layer is absent: the
stream stays inside the stack, slower and equally correct.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.sse_response import StreamHandoff
from app.security.proxies import behind_trusted_proxies
from app.settings import get_settings

STREAM_PATH = "/api/sse"
SOCKET_PATH = "/_event"


class DirectStream:
    def __init__(self, app: ASGIApp, socket: Mount | None = None) -> None:
        self.app = app
        self.socket = socket

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == STREAM_PATH and scope["method"] == "GET":
            await StreamHandoff.serve(self.app, scope, receive, send)
            return
        if scope["type"] == "websocket" and self.socket is not None:
            match, child = self.socket.matches(scope)
            if match is Match.FULL:
                await self.socket.handle({**scope, **child}, receive, send)
                return
        await self.app(scope, receive, send)


def socket_mount(api: Starlette) -> Mount | None:
    """Where Reflex serves its websocket: its own app, mounted at the root of the API by
    `api_transformer`, mounts the socket at /_event."""
    for route in api.routes:
        inner = getattr(route, "app", None) if isinstance(route, Mount) else None
        for candidate in getattr(inner, "routes", ()):
            if isinstance(candidate, Mount) and candidate.path == SOCKET_PATH:
                return candidate
    return None


def create() -> ASGIApp:
    from app.app import api, app

    asgi = app()  # builds the routes, the socket's mount among them
    mount = socket_mount(api)
    if mount is None:
        raise RuntimeError(f"Reflex serves no websocket at {SOCKET_PATH}: check app/asgi.py")
    # The websocket shortcut passes by the layer inside `asgi`: it gets the same one outside.
    return behind_trusted_proxies(DirectStream(asgi, mount), get_settings().trusted_proxies)
