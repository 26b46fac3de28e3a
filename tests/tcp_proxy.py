"""A loopback TCP proxy that can cut every connection on demand: a network drop, seen from
the client as the server side closing the connection.

It also keeps the head of every HTTP request it forwards, so a test can read exactly what
went over the wire (the `?events=` query, the `Last-Event-ID` header), and can rewrite the
`Last-Event-ID` of the requests to come (a consumer whose position lags what it already
processed). Requests are forwarded head by head, found by the blank line that ends them:
right for the body-less GETs of an event stream, not meant for anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

CHUNK = 65536


@dataclass(eq=False)  # hashed by identity: links live in a set
class _Link:
    downstream: asyncio.StreamWriter  # towards the client
    upstream: asyncio.StreamWriter  # towards the server
    pipes: list[asyncio.Task[None]] = field(default_factory=list)

    def cut(self) -> None:
        for writer in (self.downstream, self.upstream):
            writer.close()


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.request_heads: list[str] = []
        self.last_event_id_override: str | None = None
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._offline = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def drop_all(self) -> None:
        """Close every open connection on both sides, and wait until they are gone."""
        links = list(self._links)
        for link in links:
            link.cut()
        await asyncio.gather(
            *(pipe for link in links for pipe in link.pipes), return_exceptions=True
        )

    @contextlib.asynccontextmanager
    async def offline(self) -> AsyncIterator[None]:
        """Drop every connection and close each new one at once, until the block ends."""
        self._offline = True
        try:
            await self.drop_all()
            yield
        finally:
            self._offline = False

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.drop_all()
        for handler in list(self._handlers):
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._offline:
            await _close(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            await _close(writer)
            return
        link = _Link(downstream=writer, upstream=up_writer)
        link.pipes = [
            asyncio.create_task(self._pipe_requests(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._links.add(link)
        try:
            # When either side ends, the whole link goes: like a real connection would.
            await asyncio.wait(link.pipes, return_when=asyncio.FIRST_COMPLETED)
            link.cut()
            await asyncio.gather(*link.pipes, return_exceptions=True)
        finally:
            self._links.discard(link)
            await _close(writer)
            await _close(up_writer)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(CHUNK):
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _pipe_requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        pending = b""
        try:
            while chunk := await reader.read(CHUNK):
                pending += chunk
                while b"\r\n\r\n" in pending:
                    head, pending = pending.split(b"\r\n\r\n", 1)
                    head = self._rewritten(head)
                    self.request_heads.append(head.decode("latin-1"))
                    writer.write(head + b"\r\n\r\n")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def _rewritten(self, head: bytes) -> bytes:
        if self.last_event_id_override is None:
            return head
        value = self.last_event_id_override.encode("latin-1")
        return _LAST_EVENT_ID.sub(lambda match: match.group(1) + value, head)


_LAST_EVENT_ID = re.compile(rb"(?im)^(last-event-id:[ \t]*)[^\r\n]*")


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()
