"""The HTTP transport of a manager client: its events as a `text/event-stream` body."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.api.chunk_writer import direct_chunk_writer
from app.realtime.client import Client, CloseReason
from app.realtime.encoding import encode_sse
from app.realtime.manager import Connection, ConnectionManager
from app.realtime.writer import StreamWriter

SSE_HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
}

# How long a stream the server ends may take to accept its closing chunk.
_CLOSING_SECONDS = 1.0


class EventStreamResponse(Response):
    """Streams one registered client until it closes or the peer goes away.

    The response sends the headers, the `retry:` opening and the replayed backlog itself;
    live events are then pushed by the process's StreamWriter, and this request's task only
    waits for the peer to disconnect (a closed tab leaves the manager at once, presence
    depends on it) or for the server to end the stream (revoked session, slow consumer,
    shutdown). Its `finally` unregisters the client whatever happens, even when the
    response never starts.

    A body write that does not complete within `write_timeout_seconds` cuts the client off
    as a slow consumer. Pings alone rarely get there (the server and the kernel buffer
    megabytes), but a peer that stopped reading, or vanished without a FIN, stalls the
    writes once those buffers are full; without a deadline it would hold its stream slot
    and presence until TCP gave up, which may be never if something still acknowledges.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        connection: Connection,
        manager: ConnectionManager,
        writer: StreamWriter,
        retry_ms: int,
        write_timeout_seconds: float,
    ) -> None:
        # Not Response.__init__: it would send `content-length: 0` for an unset body.
        self.status_code = 200
        self.background = None
        self.init_headers(SSE_HEADERS)
        self.connection = connection
        self.manager = manager
        self.writer = writer
        self.retry_ms = retry_ms
        # anyio reads None as "no deadline": 0 switches the deadline off.
        self.write_timeout: float | None = write_timeout_seconds or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = self.connection.client
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            if await self._send_opening(send) and not client.closed:
                await self._push_until_closed(client, receive, send)
        except OSError:
            pass  # the peer went away mid-write
        finally:
            self.writer.detach(client)
            self.manager.disconnect(client)

    async def _send_opening(self, send: Send) -> bool:
        opening = encode_sse(retry_ms=self.retry_ms, comment="connected")
        backlog = b"".join(event.wire() for event in self.connection.backlog)
        self.connection.backlog = []
        with anyio.move_on_after(self.write_timeout):
            await send({"type": "http.response.body", "body": opening + backlog, "more_body": True})
            return True
        self.connection.client.close(CloseReason.SLOW_CONSUMER)
        return False

    async def _push_until_closed(self, client: Client, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        ended_by_server = False

        def end_stream() -> None:
            """The client was closed elsewhere: stop waiting for the peer."""
            nonlocal ended_by_server
            ended_by_server = True
            if asyncio.current_task() is not task:
                task.cancel()

        def asgi_write(body: bytes) -> Awaitable[None]:
            return send({"type": "http.response.body", "body": body, "more_body": True})

        client.bind_transport(end_stream)
        self.writer.attach(client, direct_chunk_writer(send) or asgi_write)
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        except asyncio.CancelledError:
            if not ended_by_server:
                raise
            task.uncancel()
        if ended_by_server and client.close_reason is not CloseReason.SLOW_CONSUMER:
            # End the body properly (a slow consumer would stall on it as on the rest).
            with anyio.move_on_after(_CLOSING_SECONDS):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
