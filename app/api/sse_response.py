"""The HTTP transport of a manager client: its events as a `text/event-stream` body."""

from __future__ import annotations

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.asgi import RAW_SEND
from app.realtime.encoding import encode_sse
from app.realtime.manager import Connection, ConnectionManager

SSE_HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
}


class EventStreamResponse(Response):
    """Streams one registered client until it closes or the peer goes away.

    Unlike Starlette's StreamingResponse under ASGI 2.4, it always watches for the peer's
    disconnect, so a closed tab leaves the manager at once (presence depends on it), not at
    the next heartbeat. Its `finally` unregisters the client whatever happens, even when
    the response never starts.
    """

    media_type = "text/event-stream"

    def __init__(self, connection: Connection, manager: ConnectionManager, retry_ms: int) -> None:
        # Not Response.__init__: it would send `content-length: 0` for an unset body.
        self.status_code = 200
        self.background = None
        self.init_headers(SSE_HEADERS)
        self.connection = connection
        self.manager = manager
        self.retry_ms = retry_ms

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = self.connection.client
        try:
            async with anyio.create_task_group() as group:
                client.bind_transport(group.cancel_scope.cancel)

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(watch_disconnect)
                raw_send = (scope.get("extensions") or {}).get(RAW_SEND)
                await self._stream(send, raw_send or send)
                group.cancel_scope.cancel()
        except OSError:
            pass  # the peer went away mid-write
        finally:
            self.manager.disconnect(client)

    async def _stream(self, send: Send, send_body: Send) -> None:
        """`send_body` may be the server's own send (see app/asgi.py): the start goes
        through every middleware, the many body chunks need not."""
        client = self.connection.client
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        opening = encode_sse(retry_ms=self.retry_ms, comment="connected")
        backlog = b"".join(event.wire() for event in self.connection.backlog)
        self.connection.backlog = []
        await send_body({"type": "http.response.body", "body": opening + backlog, "more_body": True})
        while batch := await client.next_batch():
            body = b"".join(event.wire() for event in batch)
            await send_body({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
