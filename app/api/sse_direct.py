"""GET /api/sse without the middleware stack, for the production entry (app/asgi.py).

The same authentication, checks, errors and origin policy as the FastAPI route (it runs
open_event_stream and the app's own exception handlers); only the layers in between are
gone, and with them their per-stream frames and per-chunk send wrappers.
"""

from __future__ import annotations

import inspect

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.api.deps import origin_policy, own_origin, stream_principal
from app.api.sse import open_event_stream
from app.runtime import Runtime, get_runtime


async def serve_stream(scope: Scope, receive: Receive, send: Send) -> None:
    """`scope["app"]` must be the FastAPI app (its exception handlers answer errors)."""
    request = Request(scope, receive)
    runtime = get_runtime()
    response: Response
    try:
        principal = await stream_principal(request, runtime)
        response = await open_event_stream(request, principal, runtime)
    except Exception as exc:  # answered as the route's errors are, by the app's handlers
        response = await _error_response(request, exc)
    _allow_origin(request, runtime, response)
    await response(scope, receive, send)


async def _error_response(request: Request, exc: Exception) -> Response:
    handlers = request.app.exception_handlers
    handler = next((handlers[cls] for cls in type(exc).__mro__ if cls in handlers), None)
    if handler is None:
        raise exc
    response = handler(request, exc)
    return await response if inspect.isawaitable(response) else response


def _allow_origin(request: Request, runtime: Runtime, response: Response) -> None:
    """What CORSMiddleware adds to a simple cross-origin request that the policy allows."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    if origin.lower() == own_origin(request) or not origin_policy(request, runtime).allows(origin):
        return
    response.headers["access-control-allow-origin"] = origin
    response.headers["access-control-allow-credentials"] = "true"
    response.headers.append("vary", "Origin")
