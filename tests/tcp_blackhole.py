"""A loopback TCP proxy that can turn into a black hole, and small-window client sockets.

A peer that vanishes without a FIN (a phone leaving coverage, a pulled cable) closes
nothing: the server's writes simply stop being taken. `TcpBlackhole.vanish()` plays that
peer: it stops forwarding and stops reading in both directions, yet keeps every socket
open, so neither side ever sees a FIN or a reset.

Loopback hides what a real network shows: its 64 kB segments let the kernel grow a
stream's send buffer to megabytes. `open_small_window()` connects with a mobile-sized
segment and a small receive buffer, so the server's buffers fill after tens of kilobytes,
as they would towards a real distant client, instead of after megabytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

# A classic minimum MSS and a receive buffer the kernel rounds up to a few kilobytes.
SMALL_MSS = 536
SMALL_RCVBUF = 2048


async def open_small_window(
    host: str, port: int, *, limit: int = 2**16
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client connection whose peer can only ever have a few kilobytes in flight to it.

    Both options must be set before connecting: they shape the window and the segment
    size announced in the handshake."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, SMALL_MSS)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock, limit=limit)


class TcpBlackhole:
    """Forwards 127.0.0.1:<port> to the target until `vanish()`; then holds everything."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.vanished = False
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._pumps: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def vanish(self) -> None:
        """Stop forwarding and reading both ways; close nothing (no FIN, no RST)."""
        self.vanished = True
        for pump in list(self._pumps):
            pump.cancel()
        for writer in self._writers:
            # Bytes already in the kernel stay there; none are taken from now on, so the
            # far side's window closes and its writes back up.
            writer.transport.pause_reading()

    async def close(self) -> None:
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        if self.vanished:
            client_writer.transport.abort()
            return
        upstream_reader, upstream_writer = await open_small_window(
            self.target_host, self.target_port
        )
        self._writers += [client_writer, upstream_writer]
        for source, sink in ((client_reader, upstream_writer), (upstream_reader, client_writer)):
            pump = asyncio.create_task(self._pump(source, sink))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
            # An orderly end before any vanishing is passed on as one.
            if sink.can_write_eof():
                sink.write_eof()
