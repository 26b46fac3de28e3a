"""Per-route HTTP figures for GET /metrics: a count by method, route template and status,
and the time to the response's first byte.

An ASGI middleware of our own, not a library's (prometheus-fastapi-instrumentator and
starlette-exporter time a request until its body ends): an event stream's response lasts
hours, so each request is counted, and timed, when its response starts. A stream is thus
counted once per connection, its duration is the time to its opening bytes, and an ordinary
request's is its handling time (its JSON body follows at once). The label is the template
of the route that answered (`/api/conversations/{conversation_id}/messages`), never the raw
path, and `unmatched` for a path no route knows (the API's catch-all 404/405 included): a
scanner trying random paths adds no series.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "unmatched"
_CATCH_ALL = "/api/{path:path}"  # app/api/not_found.py: what no other route answers
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(scope: Scope) -> str:
    """The template of the route the router chose (it records the innermost in the scope)."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str) or template == _CATCH_ALL:
        return UNMATCHED
    return template or "/"


def method_label(scope: Scope) -> str:
    method = str(scope.get("method", ""))
    return method if method in _METHODS else "other"


class HttpMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        counted = False

        def count(status: int) -> None:
            nonlocal counted
            counted = True
            from app.runtime import get_runtime  # the runtime imports the API: not at import

            get_runtime().metrics.http_request(
                method_label(scope), route_template(scope), status, time.perf_counter() - started
            )

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not counted:
                count(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        except Exception:
            if not counted:
                count(500)  # what the server's error handler outside us answers
            raise
