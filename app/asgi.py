"""The production ASGI entry point (scripts/serve): the Reflex app plus one shortcut.

Every `send` of a response passes through each middleware's wrapper (Reflex's and FastAPI's
error handlers, CORS, exception middleware): harmless for a REST answer, costly for a
stream that sends thousands of event chunks a second. This outermost layer hands the
server's own `send` down in the scope, and the event stream sends its body chunks through
it, after the response start went through the whole chain (so CORS and error handling
still see and shape the headers). Under `reflex run` the layer is absent and streams use
the ordinary chain: slower, equally correct.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

RAW_SEND = "chat.raw_send"


class ExposeRawSend:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/api/sse":
            scope = {**scope, "extensions": {**(scope.get("extensions") or {}), RAW_SEND: send}}
        await self.app(scope, receive, send)


def create() -> ASGIApp:
    from app.app import app

    return ExposeRawSend(app())
