"""The cheapest correct write path the server offers, for the stream writer's hot loop.

Under uvicorn with httptools (scripts/serve), a body chunk sent through ASGI costs a message
dict, a coroutine, and the server's checks and chunk framing in Python, for every stream and
every event. When the stream's `send` is uvicorn's own (the direct path of app/asgi.py) this
writes the same chunked-encoding frame straight to its transport and honours its flow
control; any other server, or a send wrapped by middleware, keeps the ASGI send.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import Send

ChunkWrite = Callable[[bytes], Awaitable[None] | None]

_UVICORN_HTTPTOOLS_CYCLE = ("uvicorn.protocols.http.httptools_impl", "RequestResponseCycle")


def direct_chunk_writer(send: Send) -> ChunkWrite | None:
    """A writer of `body` as one chunk, or None when `send` is not uvicorn's own."""
    cycle: Any = getattr(send, "__self__", None)
    kind = type(cycle)
    if (kind.__module__, kind.__name__) != _UVICORN_HTTPTOOLS_CYCLE:
        return None
    if not cycle.chunked_encoding or cycle.response_complete:
        return None
    transport, flow = cycle.transport, cycle.flow

    def write(body: bytes) -> Awaitable[None] | None:
        if cycle.disconnected or transport.is_closing():
            raise ConnectionResetError("the peer went away")
        last_body, frame = _last_framed
        transport.write(frame if body is last_body else _framed(body))
        # Past the transport's high-water mark: the writer waits for it in a side task.
        return flow.drain() if flow.write_paused else None

    return write


_last_framed: tuple[bytes, bytes] = (b"", b"0\r\n\r\n")


def _framed(body: bytes) -> bytes:
    """`body` as one chunk, remembered: a pass of the writer sends the same bytes object
    (one event's encoding) to every stream in turn, so it is framed once, not per stream."""
    global _last_framed
    frame = b"%x\r\n%b\r\n" % (len(body), body)
    _last_framed = (body, frame)
    return frame
