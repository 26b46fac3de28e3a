"""The reference peer: SSE the way Python developers usually write it.

sse-starlette's EventSourceResponse, encode/broadcaster's memory backend, uvicorn. One
channel; POST /publish broadcasts the request body (the same payload our server sends) to
every open stream. No authentication and no database: the peer gets the easy path.

    uvicorn bench.reference_server:app --port 9100
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import cast

from broadcaster import Broadcast, Event
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

broadcast = Broadcast("memory://")
CHANNEL = "bench"


async def stream(request: Request) -> EventSourceResponse:
    async def events() -> AsyncIterator[dict[str, str]]:
        async with broadcast.subscribe(channel=CHANNEL) as subscriber:
            # broadcaster annotates Subscriber.__aiter__ "AsyncGenerator[Event | None, None] | None":
            # it is an async generator, and it yields only events (get() raises at the end).
            async for event in subscriber:  # type: ignore[union-attr]  # that "| None"
                yield {"event": "notification:new", "data": cast(Event, event).message}

    return EventSourceResponse(events(), ping=30)


async def publish(request: Request) -> Response:
    await broadcast.publish(channel=CHANNEL, message=(await request.body()).decode())
    return Response(status_code=204)


@contextlib.asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    await broadcast.connect()
    try:
        yield
    finally:
        await broadcast.disconnect()


app = Starlette(
    routes=[Route("/sse", stream), Route("/publish", publish, methods=["POST"])],
    lifespan=lifespan,
)
