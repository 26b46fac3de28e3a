"""The production entry point (scripts/serve): the Reflex app, with the event stream and the
page's websocket direct.

A stream lives for hours, and everything on its call path lives with it. Through the Reflex,
Starlette and FastAPI layers that is a dozen middleware frames, exception-handler closures
and an exit stack per stream (about 25 kB, measured with tracemalloc), and every chunk would
pass each middleware's send wrapper. Here `GET /api/sse` goes straight to the code the
FastAPI route runs (app/api/sse_direct.py), with the same authentication, errors and origin
policy; every other request, the stream's CORS preflight included, takes the ordinary path.
A chat tab's websocket lives as long, so it goes straight to the mount Reflex serves it
from (13 kB less per open tab, measured with bench/page_path.py's idle tabs): none of the
API's middleware acts on a websocket (CORS and the body limit are for HTTP; engine.io
checks the socket's Origin against the same policy, app/app.py).
Under `reflex run` this layer is absent: slower, equally correct.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

STREAM_PATH = "/api/sse"
SOCKET_PATH = "/_event"


class DirectStream:
    def __init__(self, app: ASGIApp, api: ASGIApp, socket: Mount | None = None) -> None:
        self.app = app
        self.api = api
        self.socket = socket

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == STREAM_PATH and scope["method"] == "GET":
            from app.api.sse_direct import serve_stream

            scope["app"] = self.api  # as Starlette does: its handlers find the app there
            await serve_stream(scope, receive, send)
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
    return DirectStream(asgi, api, mount)
