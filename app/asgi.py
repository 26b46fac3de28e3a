"""The production entry point (scripts/serve): the Reflex app, with the event stream direct.

A stream lives for hours, and everything on its call path lives with it. Through the Reflex,
Starlette and FastAPI layers that is a dozen middleware frames, exception-handler closures
and an exit stack per stream (about 25 kB, measured with tracemalloc), and every chunk would
pass each middleware's send wrapper. Here `GET /api/sse` goes straight to the code the
FastAPI route runs (app/api/sse_direct.py), with the same authentication, errors and origin
policy; every other request, the stream's CORS preflight included, takes the ordinary path.
Under `reflex run` this layer is absent and the route serves streams: slower, equally correct.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

STREAM_PATH = "/api/sse"


class DirectStream:
    def __init__(self, app: ASGIApp, api: ASGIApp) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == STREAM_PATH and scope["method"] == "GET":
            from app.api.sse_direct import serve_stream

            scope["app"] = self.api  # as Starlette does: its handlers find the app there
            await serve_stream(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create() -> ASGIApp:
    from app.app import api, app

    return DirectStream(app(), api)
