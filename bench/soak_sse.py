"""The soak's view of the wire: one raw HTTP/1.1 `GET /api/sse` and its events.

Raw sockets (as in bench/loadgen.py) for two reasons: a few hundred consumers stay cheap,
and the soak decides exactly how a connection ends: a FIN (clean close) or a RST (abrupt,
SO_LINGER 0), as a crashed browser or a dropped network would.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass
from urllib.parse import quote


class StreamRefused(ConnectionError):
    """The server answered with something other than 200 (e.g. 429 or 503)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status


@dataclass(slots=True)
class SseEvent:
    id: str | None
    type: str
    data: str


@dataclass
class SseConnection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    chunked: bool

    def close_cleanly(self) -> None:
        """FIN: the server sees an orderly end of the request."""
        self.writer.close()

    def close_abruptly(self) -> None:
        """RST: SO_LINGER with a zero timeout discards unsent data and resets the socket."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.writer.transport.abort()

    async def read_body(self) -> bytes:
        """The next piece of the response body; b"" at its end."""
        if not self.chunked:
            return await self.reader.read(1 << 16)
        size_line = await self.reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            return b""
        chunk = await self.reader.readexactly(size + 2)  # the chunk and its CRLF
        return chunk[:-2]


async def open_sse(
    host: str,
    port: int,
    token: str,
    *,
    tenant: int,
    last_event_id: str | None = None,
    id_in_query: bool = False,
) -> SseConnection:
    """Open `/api/sse`; resume from `last_event_id` by header (as browsers do) or by
    `?lastEventId=` (the documented fallback)."""
    path = f"/api/sse?tenant={tenant}"
    headers = [
        f"Host: {host}:{port}",
        "Accept: text/event-stream",
        f"Authorization: Bearer {token}",
    ]
    if last_event_id is not None:
        if id_in_query:
            path += f"&lastEventId={quote(last_event_id)}"
        else:
            headers.append(f"Last-Event-ID: {last_event_id}")
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    try:
        request = "\r\n".join([f"GET {path} HTTP/1.1", *headers]) + "\r\n\r\n"
        writer.write(request.encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
    except BaseException:
        writer.transport.abort()
        raise
    status_line, _, header_block = head.decode("latin-1").partition("\r\n")
    parts = status_line.split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    if status != 200:
        writer.transport.abort()
        raise StreamRefused(status, parts[2] if len(parts) > 2 else "")
    chunked = "transfer-encoding: chunked" in header_block.lower()
    return SseConnection(reader, writer, chunked)


class SseParser:
    """Turns body bytes into complete events; a partial event waits for the rest.

    Only what the soak needs of the WHATWG parser: `id`, `event`, `data` (joined by LF);
    comments and `retry:` are dropped. The server ends lines with LF only.
    """

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[SseEvent]:
        self._buffer += data
        events: list[SseEvent] = []
        while (end := self._buffer.find(b"\n\n")) >= 0:
            block, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
            event = _parse_block(block.decode("utf-8"))
            if event is not None:
                events.append(event)
        return events


def _parse_block(block: str) -> SseEvent | None:
    event_id: str | None = None
    event_type = "message"
    data: list[str] = []
    for line in block.split("\n"):
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            event_id = value
        elif name == "event":
            event_type = value
        elif name == "data":
            data.append(value)
    if not data and event_id is None:
        return None  # the opening `retry:` block, or a comment
    return SseEvent(event_id, event_type, "\n".join(data))
